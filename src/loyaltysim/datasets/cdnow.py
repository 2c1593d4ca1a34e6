"""The CDNOW data: 78 weeks of purchases by a cohort of first-time buyers at an online music retailer.

The cohort is the 23,570 customers who made their first purchase at CDNOW in the first quarter of 1997; the file
holds every purchase they made from 1 January 1997 to 30 June 1998 (78 weeks): ``CDNOW_master.txt``, one line per
order (customer id, date YYYYMMDD, number of CDs, dollar value). ``CDNOW_sample.txt`` is the 1/10th systematic sample
of 2,357 customers (master id, sample id, date, CDs, dollars) that Fader, Hardie & Lee (2005, "Counting your
customers the easy way", Marketing Science 24(2): 275-284) fit the BG/NBD to on weeks 1-39 (r = 0.243, α = 4.414, a
= 0.793, b = 2.426, log-likelihood -9582.4: the sample reproduces them, see :mod:`loyaltysim.measures.bgnbd`).
Bruce Hardie publishes both files; the copies used here are the ones shipped in the wheel of the Python package
``lifetimes`` 0.11.3 on PyPI (``lifetimes/datasets/``; its master file has a header line the original lacks), and
their SHA-256 are recorded below, so that every user and CI read the same bytes.

**Getting the files.** :func:`fetch` (the command ``loyaltysim data cdnow``) runs ``python -m pip download
lifetimes==0.11.3 --no-deps`` into a temporary folder, reads the two files out of the wheel (a zip archive),
checks their SHA-256 and writes them to the cache folder: ``$LOYALTYSIM_DATA/cdnow`` if that variable is set, else
``$XDG_CACHE_HOME/loyaltysim/cdnow`` (``~/.cache/loyaltysim/cdnow``). Only PyPI is reached; the ``lifetimes``
package is never installed or imported (it may not import under numpy 2). Files already there with the right
SHA-256 are used as they are; a file with other bytes is replaced.

**Reading them.** :func:`load` gives the log as :func:`loyaltysim.measures.transactions.read_log` does (customer
id, the day, the amount in dollars; one row per order) and :func:`transactions` the tidy frame (same-day orders made
one transaction, time in weeks since 1 January 1997), ready for the moments and the BG/NBD benchmark: weeks 1-39
calibrate, weeks 40-78 are the holdout.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pandas as pd

from loyaltysim.experiments.rundirs import file_sha256
from loyaltysim.measures import transactions as tr

WHEEL = "lifetimes==0.11.3"
FILES = {  # which: (file in the wheel's lifetimes/datasets/, SHA-256 of its bytes)
    "master": ("CDNOW_master.txt", "eff6889ed364c5199d6eacbbeb7a6d559971df4406ac876f322c373f00a072ef"),
    "sample": ("CDNOW_sample.txt", "6fae10155c0b0ba363c2c386e30f77990d22328220efd862a5edd1443420d94a"),
}
CUSTOMERS = {"master": 23_570, "sample": 2_357}
CACHE_ENV = "LOYALTYSIM_DATA"
START = pd.Timestamp("1997-01-01")  # the first day of week 1
WEEKS = 78  # 1 January 1997 to 30 June 1998
CALIBRATION_WEEKS = 39  # weeks 1-39 calibrate, 40-78 are the holdout
DOWNLOAD_TIMEOUT_S = 300


class CDNOWUnavailable(RuntimeError):
    """The files are not in the cache and could not be downloaded (pip failed: no connection to PyPI, no pip)."""


def cache_folder(cache: str | Path | None = None) -> Path:
    """Where the files are kept: ``cache`` if given, else ``$LOYALTYSIM_DATA/cdnow``, else
    ``$XDG_CACHE_HOME/loyaltysim/cdnow`` (``~/.cache/loyaltysim/cdnow``)."""
    if cache is not None:
        return Path(cache)
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]) / "cdnow"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "loyaltysim" / "cdnow"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _intact(path: Path, sha: str) -> bool:
    return path.is_file() and file_sha256(path) == sha


def fetch(cache: str | Path | None = None) -> Path:
    """The folder holding both CDNOW files with their recorded SHA-256, downloading the wheel first if they are not
    there yet (see the module's docstring). :class:`CDNOWUnavailable` if the download fails; ValueError if the
    wheel's files are not the recorded ones."""
    folder = cache_folder(cache)
    if all(_intact(folder / name, sha) for name, sha in FILES.values()):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as tmp:
        command = [sys.executable, "-m", "pip", "download", WHEEL, "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "--quiet", "--dest", tmp]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise CDNOWUnavailable(f"could not run pip to download {WHEEL}: {err}") from None
        wheels = sorted(Path(tmp).glob("*.whl"))
        if done.returncode or not wheels:
            said = (done.stderr or done.stdout).strip().splitlines()
            raise CDNOWUnavailable(f"pip could not download {WHEEL} from PyPI ({said[-1] if said else 'no wheel'}); "
                                   f"put {' and '.join(n for n, _ in FILES.values())} in {folder} or set "
                                   f"{CACHE_ENV}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            for name, sha in FILES.values():
                data = wheel.read(f"lifetimes/datasets/{name}")
                if _sha256(data) != sha:
                    raise ValueError(f"{name} in {wheels[0].name} has SHA-256 {_sha256(data)}, not the recorded {sha}")
                part = Path(tmp) / name
                part.write_bytes(data)
                part.replace(folder / name)
    return folder


def load(which: str = "sample", cache: str | Path | None = None) -> pd.DataFrame:
    """The CDNOW orders of ``which`` ("master": all 23,570 customers; "sample": the 2,357 of the BG/NBD paper) as a
    transaction log: customer (the master file's id, as text), date, amount (dollars), cds (the number of CDs); one
    row per order, fetched first if need be."""
    if which not in FILES:
        raise ValueError(f"unknown CDNOW file {which!r}; use one of {', '.join(FILES)}")
    path = fetch(cache) / FILES[which][0]
    names = ["customer", "date", "cds", "amount"] if which == "master" else ["customer", "sample_id", "date", "cds",
                                                                            "amount"]
    with path.open() as fh:
        header = 0 if not fh.readline().split()[0].isdigit() else None  # the wheel's master file has a header
    raw = pd.read_csv(path, sep=r"\s+", header=header, names=names, dtype={"customer": str, "date": str})
    return pd.DataFrame({"customer": raw["customer"], "date": pd.to_datetime(raw["date"], format="%Y%m%d"),
                         "amount": raw["amount"].astype(float), "cds": raw["cds"].astype(int)})


def transactions(which: str = "sample", cache: str | Path | None = None) -> pd.DataFrame:
    """The tidy frame (customer, time in weeks since 1 January 1997, amount) of :func:`load`: several orders on one
    day are one transaction (as in Fader, Hardie & Lee 2005)."""
    return tr.from_dates(load(which, cache), origin=START)
