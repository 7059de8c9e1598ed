"""The example notebooks under docs/notebooks/ run from top to bottom in a fresh kernel of this environment and end
on a figure; they are committed without outputs."""

from pathlib import Path

import ipykernel.kernelspec
import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "docs" / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
KERNEL_NAME = "slm-lab-notebook-test"
# a whole notebook is meant to run in under a minute on 2 CPU cores; one cell may take this long on a slow machine
CELL_TIMEOUT_S = 300


@pytest.fixture
def kernel_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernelspec that starts this interpreter (``sys.executable``), in a tmp folder that ``JUPYTER_PATH`` puts
    ahead of every other, so that the notebook runs in this environment whatever kernels the machine has."""
    prefix = tmp_path / "jupyter"
    ipykernel.kernelspec.install(kernel_name=KERNEL_NAME, prefix=str(prefix))
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    return KERNEL_NAME


def test_there_is_a_notebook() -> None:
    assert NOTEBOOKS, f"no notebook under {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name}: clear the outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_and_ends_on_a_figure(
    path: Path, kernel_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Executed in an empty working folder, with the temp dir under tmp_path: it runs without an error, writes
    nothing in its working folder, and its last cell shows a PNG figure. PY_ENV=test skips the lab's own graphs,
    for speed; the notebook's matplotlib figure does not depend on them. MPLBACKEND is unset so that a CI setting
    cannot replace the inline backend that turns the figure into an output."""
    workdir, tmpdir = tmp_path / "work", tmp_path / "tmp"
    workdir.mkdir()
    tmpdir.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    monkeypatch.setenv("PY_ENV", "test")
    monkeypatch.delenv("SLM_DATA_DIR", raising=False)
    monkeypatch.delenv("MPLBACKEND", raising=False)
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name=kernel_name,
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute()  # raises CellExecutionError, with the failing cell and its traceback, on an error
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    errors = [out for cell in code_cells for out in cell.outputs if out.output_type == "error"]
    assert not errors, errors
    written = sorted(p.name for p in workdir.iterdir())
    assert not written, f"the notebook wrote into its working folder: {written}"
    last = code_cells[-1].outputs
    assert any("image/png" in out.get("data", {}) for out in last), f"the last cell shows no figure: {last}"
