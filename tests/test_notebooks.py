"""Every teaching notebook runs top to bottom against the installed library, so none drifts from the API; each draws
a figure, and notebooks 02-04 show the dashboard's components (a widget)."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
WITH_DASHBOARD = ("02_", "03_", "04_")
WIDGET = "application/vnd.jupyter.widget-view+json"


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no notebook"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path, monkeypatch):
    # a notebook that reads it runs a smaller market here (the kernel inherits the environment): the test checks
    # that it runs and draws, not its numbers
    monkeypatch.setenv("LOYALTYSIM_NOTEBOOK_POPULATION", "1000")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "data" in o and "image/png" in o["data"]]
    assert images, "the notebook shows no figure"
    widgets = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
               if WIDGET in o.get("data", {})]
    if path.name.startswith(WITH_DASHBOARD):
        assert widgets, "the notebook shows no dashboard (loyaltysim.viz.page.explore)"


def test_the_course_is_numbered_without_gaps():
    numbers = [int(p.name.split("_", 1)[0]) for p in NOTEBOOKS]
    assert numbers == list(range(1, len(numbers) + 1)), [p.name for p in NOTEBOOKS]
