"""The benchmark command runs end to end at a tiny N. Only that: no figure is checked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_benchmark_command_runs_at_tiny_scale(tmp_path: Path) -> None:
    output = tmp_path / "benchmarks.md"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--scale", "0.00001",
         "--output", str(output)],
        capture_output=True, text=True, timeout=280, cwd=ROOT,
        env={**os.environ, "RAY_AUTH_MODE": "token"},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    table = output.read_text()
    for scenario in ("| 1. ", "| 2. ", "| 3. ", "| 4. ", "| 5. ", "| 6. ", "| 7. ", "| 8. ",
                     "| 9. "):
        assert scenario in table, table
    assert "Machine: cores " in table
