"""Every notebook runs, top to bottom, in a fresh kernel (nbclient) with the tiny-budget switch
(``HYPERJAX_NOTEBOOK_SMOKE=1``): a notebook that breaks fails the suite."""

import os

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = os.path.join(os.path.dirname(__file__), "..", "notebooks")


@pytest.mark.parametrize("name", ["quickstart", "seed_experiment", "surrogate"])
def test_notebook_runs(name, tmp_path, monkeypatch):
    monkeypatch.setenv("HYPERJAX_NOTEBOOK_SMOKE", "1")
    monkeypatch.setenv("WANDB_MODE", "offline")
    nb = nbformat.read(os.path.join(NOTEBOOKS, f"{name}.ipynb"), as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code)
    # the first cell reports the devices; figures and the GIF come out as rich outputs
    assert "device(s)" in "".join(o.get("text", "") for o in code[0].outputs)
    kinds = {k for c in code for o in c.outputs for k in o.get("data", {})}
    assert "application/vnd.plotly.v1+json" in kinds or "text/html" in kinds
    assert os.listdir(tmp_path / "runs")  # the studies were stored where the notebook said
