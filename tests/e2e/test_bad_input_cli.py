"""Bad input at the command line: deploying files that cannot be imported, and reading an
exception whose class only the deployed file defines from a process that lacks the file.

Syntax errors, files with no App or two Apps: test_cli.py::
test_user_mistakes_print_one_line_and_exit_nonzero.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

Cli = Callable[..., subprocess.CompletedProcess[str]]


def test_files_that_fail_to_import_print_one_line(rayfn_cli: Cli, tmp_path: Path) -> None:
    cases = {
        "missing_module.py": ("import rayfn\nimport no_such_module_here\n",
                              "failed to import (line 2): ModuleNotFoundError"),
        "raises_at_import.py": ("import rayfn\napp = rayfn.App('raises')\n"
                                "raise RuntimeError('config missing')\n",
                                "failed to import (line 3): RuntimeError: config missing"),
        "odd_app_name.py": ("import rayfn\napp = rayfn.App('../escape')\n",
                            "app name '../escape' may only contain"),
    }
    for name, (source, message) in cases.items():
        path = tmp_path / name
        path.write_text(source)
        result = rayfn_cli("deploy", str(path), check=False)
        assert result.returncode == 1, (name, result.stdout, result.stderr)
        assert message in result.stderr.replace("\n", ""), (name, result.stderr)
        assert "Traceback" not in result.stdout + result.stderr


def test_an_exception_defined_only_in_the_deployed_file(
    rayfn_cli: Cli, rest: httpx.Client, tmp_path: Path
) -> None:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "custom_errors_app.py").write_text(
        "import rayfn\n"
        "app = rayfn.App('custom-errors-app')\n"
        "class QuotaExceeded(Exception):\n"
        "    '''Defined in this file only.'''\n"
        "@app.function()\n"
        "def charge(amount: int) -> int:\n"
        "    raise QuotaExceeded(f'quota exceeded by {amount}')\n"
    )
    rayfn_cli("deploy", str(app_dir / "custom_errors_app.py"))
    client_dir = tmp_path / "client"  # the client runs elsewhere: it cannot import the file
    client_dir.mkdir()
    script = client_dir / "read_error.py"
    script.write_text(
        "import rayfn\n"
        "try:\n"
        "    import custom_errors_app\n"
        "    print('importable')\n"
        "except ImportError:\n"
        "    pass\n"
        "call = rayfn.Function.from_name('custom-errors-app', 'charge').spawn(7)\n"
        "try:\n"
        "    call.get(timeout=120)\n"
        "except Exception as exc:\n"
        "    print(type(exc).__module__, type(exc).__qualname__, str(exc),\n"
        "          isinstance(exc, rayfn.exception.Error))\n"
        "print(call.object_id)\n"
    )
    done = subprocess.run([sys.executable, str(script)], cwd=client_dir, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert "importable" not in lines
    # The class was shipped by value with the function, so the client rebuilds it: the
    # same name and message, though it cannot import the module.
    assert lines[0] == "custom_errors_app QuotaExceeded quota exceeded by 7 False", lines
    shown = rayfn_cli("call", "get", lines[1], check=False)
    assert shown.returncode == 1
    assert "the call raised QuotaExceeded: quota exceeded by 7" in shown.stderr
    assert "Traceback" not in shown.stdout + shown.stderr
    response = rest.get(f"/v1/calls/{lines[1]}/result")
    assert response.status_code == 424, response.text
    assert response.json()["error"]["type"] == "custom_errors_app.QuotaExceeded"
    cancelled = rayfn_cli("call", "cancel", lines[1])  # a finished call: a no-op that says so
    assert '"state": "failed"' in cancelled.stdout
    assert "had already finished (failed); nothing to cancel" in cancelled.stderr
    rayfn_cli("app", "stop", "custom-errors-app")
