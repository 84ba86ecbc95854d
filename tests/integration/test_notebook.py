"""The quickstart notebook runs top to bottom against a real rayfn, in a real kernel.

Its cells assert what they show, so a misbehaving rayfn fails the execution here.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import nbclient
import nbformat
import pytest
from ipykernel.kernelspec import write_kernel_spec

import rayfn
from rayfn.exception import NotFoundError

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "quickstart.ipynb"


def pin_python3_kernel(jupyter_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the "python3" kernel this interpreter (``sys.executable``), whatever kernels
    the machine or the user have installed: JUPYTER_PATH comes first in the search."""
    write_kernel_spec(path=jupyter_dir / "kernels" / "python3")
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter_dir))


def environment_check_cell() -> nbformat.NotebookNode:
    """A first cell, added in memory only: the kernel runs this Python and inherited the
    test process's environment, so it finds the session's service."""
    expected = {key: os.environ[key] for key in ("RAYFN_STATE_DIR", "RAY_AUTH_MODE")}
    source = "\n".join(
        [
            "import os, sys",
            f"assert sys.executable == {sys.executable!r}, sys.executable",
            f"for key, value in {expected!r}.items():",
            "    assert os.environ.get(key) == value, (key, os.environ.get(key))",
        ]
    )
    return nbformat.v4.new_code_cell(source, id="test-environment")


def test_quickstart_notebook(
    unique_app: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # The committed notebook is clean: no outputs, no execution counts.
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.id
    assert nb.metadata.kernelspec.name == "python3"

    pin_python3_kernel(tmp_path / "jupyter", monkeypatch)
    monkeypatch.setenv("RAYFN_QUICKSTART_APP", unique_app)  # inherited by the kernel
    nb.cells.insert(0, environment_check_cell())
    client = nbclient.NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    try:
        client.execute()
    finally:
        # The notebook stops its app last; stop it here if a cell failed before that.
        with contextlib.suppress(NotFoundError):
            rayfn.App(unique_app).stop()

    outputs = "".join(
        out.get("text", "") for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
    )
    assert "49" in outputs
    assert "caught InvalidJobError" in outputs
    # square.map(range(10)) drew its progress bar as text: there are no ipywidgets here.
    assert "\rsquare [" + "#" * 30 + "] 10/10 " in outputs
