from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _uses_service(service: Path) -> None:
    """Every e2e test runs against the session's rayfn, through its state directory."""


@pytest.fixture
def rayfn_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the ``rayfn`` command as a user would: a separate process, same environment."""

    def run(
        *args: str, check: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        executable = Path(sys.executable).parent / "rayfn"
        result = subprocess.run(
            [str(executable), *args], capture_output=True, text=True, timeout=timeout,
            env={**os.environ, "COLUMNS": "200"}, cwd=ROOT,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"rayfn {' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    return run
