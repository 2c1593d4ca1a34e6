"""A real headless browser for tests of web pages: Debian's ``chromium`` and ``chromedriver``, driven by Selenium.
Skipped locally if they are missing; in CI (env ``CI`` set) a missing browser fails, since ``.ci/run`` installs it."""

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable

import pytest

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def headless_chromium(width: int = 1500, height: int = 1250):
    """A Selenium driver of headless Chromium (the caller quits it); skips, or fails in CI, without a browser."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the dev extra has it)")
    if missing:
        reason = f"{' and '.join(missing)} not found: install Debian's chromium and chromium-driver"
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail(f"{reason} (CI installs them: .ci/run)")
        pytest.skip(reason)
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={width},{height}"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def wait_until_served(url: str, proc: subprocess.Popen, seconds: float, why: Callable[[], str]) -> None:
    """Poll ``url`` until it answers 200; if ``proc`` exits or ``seconds`` pass first, kill it and fail the test with
    ``why()`` (e.g. the server's error output)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(why())
        time.sleep(0.3)
