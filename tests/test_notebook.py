"""The modeller's notebook runs top to bottom, as CI and a modeller would run it.

The kernel is this interpreter (the project's venv, where `pip install -e '.[test]'` put
ipykernel): a kernelspec is written into a temporary Jupyter path for the test alone, so no
kernel installed on the machine (or missing from it) changes what runs. The notebook runs in a
temporary working directory, with its temporary files, IPython profile and Jupyter runtime
files there too.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
import pytest
from ipykernel.kernelspec import write_kernel_spec
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "recalibrate.ipynb"
KERNEL = "osmanthus-test-venv"
CELL_TIMEOUT = 120  # seconds for any one cell
BUDGET = 150  # seconds for the whole notebook, kernel start included (it takes about 15)


def test_notebook_is_saved_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code, "the notebook has no code"
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, (
            f"cell {cell.get('id')} was saved with its outputs")


@pytest.mark.slow
def test_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    jupyter = tmp_path / "jupyter"
    write_kernel_spec(jupyter / "kernels" / KERNEL, overrides={
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Osmanthus (test venv)",
    })
    workdir, scratch = tmp_path / "work", tmp_path / "tmp"
    workdir.mkdir()
    scratch.mkdir()
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(jupyter / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("TMPDIR", str(scratch))  # the notebook's tempfile.mkdtemp lands here
    monkeypatch.setenv("OMP_NUM_THREADS", "1")

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(notebook, kernel_name=KERNEL, timeout=CELL_TIMEOUT,
                            resources={"metadata": {"path": str(workdir)}})
    started = time.monotonic()
    try:
        client.execute()
    except CellExecutionError as error:  # the message holds the cell and its traceback
        pytest.fail(f"a notebook cell failed:\n{error}")
    seconds = time.monotonic() - started
    assert seconds < BUDGET, f"the notebook took {seconds:.0f} s (budget {BUDGET} s)"

    errors = [output for cell in notebook.cells if cell.cell_type == "code"
              for output in cell.outputs if output.output_type == "error"]
    assert not errors
    assert all(cell.execution_count for cell in notebook.cells if cell.cell_type == "code")

    # The walk ended where it says, in the notebook's registry: v0003 recalibrates v0002 (the
    # same trees, a PDO 5 points wider) and serves, unless a gate other than PSI refused it,
    # which the notebook never overrules.
    registries = list(scratch.glob("osmanthus-recalibrate-*/registry"))
    assert len(registries) == 1, "the notebook should write everything under one temporary folder"
    from model.registry import Registry
    from model.scorecard import PointsScale

    registry = Registry(registries[0])
    versions = registry.list()
    assert [row["version"] for row in versions] == ["v0001", "v0002", "v0003"]
    assert registry.record("v0003")["parent"] == "v0002"
    assert registry.load("v0003").scorecard.scale.pdo == PointsScale().pdo + 5
    assert (registry.path("v0003") / "model.txt").read_bytes() == \
        (registry.path("v0002") / "model.txt").read_bytes()
    last = [e for e in registry.history() if e["version"] == "v0003"][-1]
    if registry.champion() == "v0003":
        assert last["event"] in ("promoted", "forced")
        assert all("score PSI" in reason for reason in last["reasons"])
    else:
        assert registry.champion() == "v0002" and last["event"] == "refused"
        assert any("score PSI" not in reason for reason in last["reasons"])
    assert all(e["why"] for e in registry.history() if e["event"] == "forced")
    assert not list(workdir.iterdir()), "the notebook wrote into its working directory"
