"""The notebooks: committed without outputs, and each runs top to bottom (CI runs them with 20 examples)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CI_LIMIT = "20"


def test_the_three_notebooks_are_there():
    assert [p.name for p in NOTEBOOKS] == ["01-quickstart.ipynb", "02-tune-budgets.ipynb", "03-compare-stages.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebooks_have_no_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name} cell {i} has outputs; clear them before committing"
            assert cell.execution_count is None, f"{path.name} cell {i} has an execution count; clear outputs"
    assert "RAGTRIM_NB_LIMIT" in "".join(c.source for c in nb.cells), f"{path.name} must read its size from RAGTRIM_NB_LIMIT"


# The notebooks load the static embedding model (default preset): slow, but run in CI (make test runs all).
@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_without_errors(path, monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("RAGTRIM_NB_LIMIT", CI_LIMIT)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    nb = nbformat.read(path, as_version=4)
    # First, which interpreter the kernel runs: it must be this one (the project's venv).
    nb.cells.insert(0, nbformat.v4.new_code_cell("import os, sys\nprint(sys.executable)\nprint(os.environ['RAGTRIM_NB_LIMIT'])"))
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=900, resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    client.execute()  # raises CellExecutionError on the first cell that fails
    first = "".join(o.get("text", "") for o in nb.cells[0].outputs).split()
    assert os.path.realpath(first[0]) == os.path.realpath(sys.executable), f"the kernel ran {first[0]}, not {sys.executable}"
    assert first[1] == CI_LIMIT
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert errors == []
