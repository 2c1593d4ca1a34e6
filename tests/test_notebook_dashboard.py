"""The dashboard's components in a notebook, as an instructor sees them: a real JupyterLab on loopback, a notebook
that shows ``loyaltysim.viz.page.explore``, run in headless Chromium (see :mod:`browser`). The page must render from
the installed widget extensions and Solara's installed assets, open its controls from ☰, and redraw on Step."""

import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from browser import free_port, headless_chromium, wait_until_served

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    pytest.importorskip("jupyterlab", reason="JupyterLab is not installed (the dev and notebooks extras have it)")
    root = tmp_path_factory.mktemp("lab")
    nb = new_notebook(cells=[new_code_cell(
        "from loyaltysim.viz.page import explore\n"
        f"explore({str(REPO / 'experiments/scenarios/trap.toml')!r}, plots=['shares', 'kano'], population=300)")],
        metadata={"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}})
    nbformat.write(nb, root / "dashboard.ipynb")
    home = root / "home"
    home.mkdir()
    env = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "HOME": str(home),
           "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "SOLARA_TELEMETRY_MIXPANEL_ENABLE": "false"}
    port = free_port()
    log_path = root / "lab.log"  # the server's log, read if it fails to start (a pipe nobody reads could fill up)
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
         f"--ServerApp.root_dir={root}", "--IdentityProvider.token=", "--ServerApp.password=",
         "--LabApp.expose_app_in_browser=True"],
        cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=log, text=True)
    url = f"http://127.0.0.1:{port}/"
    wait_until_served(url + "api/status", proc, 90,
                      lambda: f"JupyterLab did not start on {url}:\n{log_path.read_text()[-3000:]}")
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def _text(driver) -> str:
    """The text of the cell's outputs, shown or behind the open menu."""
    return driver.execute_script("return document.querySelector('.jp-OutputArea').textContent")


def test_browser_the_dashboard_runs_in_a_jupyterlab_notebook(lab):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = headless_chromium(1400, 1000)
    try:
        wait = WebDriverWait(driver, 90, poll_frequency=0.25)
        driver.get(lab + "lab/tree/dashboard.ipynb")
        wait.until(lambda d: d.execute_script(
            "return !!(window.jupyterapp && document.querySelector('.jp-Notebook .jp-Cell'))"))
        # JupyterLab may ask which kernel to start (the notebook's own, Python 3, is the one offered): accept it
        time.sleep(2)
        for button in driver.find_elements(By.CSS_SELECTOR, ".jp-Dialog .jp-mod-accept"):
            button.click()
        wait.until(lambda d: d.execute_script(
            "const w = window.jupyterapp.shell.currentWidget;"
            "return !!(w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel"
            " && w.sessionContext.session.kernel.status === 'idle')"))
        driver.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        output = ".jp-OutputArea-output"
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f"{output} .v-toolbar__title")
                   or d.find_elements(By.CSS_SELECTOR, f"{output}[data-mime-type='application/vnd.jupyter.stderr']"))
        errors = driver.find_elements(By.CSS_SELECTOR, f"{output}[data-mime-type='application/vnd.jupyter.stderr']")
        assert not errors, errors[0].text
        assert driver.find_element(By.CSS_SELECTOR, f"{output} .v-toolbar__title").text == "loyaltysim: trap"

        def plots():
            return [img.get_attribute("src") for img in driver.find_elements(By.CSS_SELECTOR, f"{output} img")]

        wait.until(lambda d: len(plots()) == 2)
        before = plots()
        assert "This run: week 0 of 208" in _text(driver)

        # the presets, levers and controls open from the menu button (☰) of the page's bar
        driver.find_element(By.CSS_SELECTOR, f"{output} .v-app-bar button").click()
        wait.until(lambda d: [b for b in d.find_elements(By.CSS_SELECTOR, ".v-menu__content button")
                              if b.text.strip().lower() == "step"])
        menu = driver.find_element(By.CSS_SELECTOR, ".v-menu__content")
        assert "Classroom presets" in menu.text and "Switching cost (utility)" in menu.text
        step = next(b for b in menu.find_elements(By.CSS_SELECTOR, "button") if b.text.strip().lower() == "step")
        step.click()
        wait.until(lambda d: re.search(r"This run: week [1-9]\d* of 208", _text(d)))
        wait.until(lambda d: all(a != b for a, b in zip(plots(), before, strict=True)))
    finally:
        driver.quit()
