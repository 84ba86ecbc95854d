"""The command line, run as separate processes against the session's service."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

Cli = Callable[..., subprocess.CompletedProcess[str]]
EXAMPLE = "examples/my_job_queue.py"


def test_modal_job_queue_example_end_to_end(rayfn_cli: Cli) -> None:
    deployed = rayfn_cli("deploy", EXAMPLE)
    assert "deployed app 'my-job-queue'" in deployed.stdout
    ran = rayfn_cli("run", EXAMPLE)
    assert ran.stdout.strip().splitlines()[-1] == "{'result': 'my-data'}"


def _script_output(path: Path, code: str) -> str:
    """Run ``code`` as a script of its own (a client process of the service)."""
    import sys

    path.write_text(code)
    return subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, check=True, timeout=120
    ).stdout.strip()


def test_call_commands(rayfn_cli: Cli, tmp_path: Path) -> None:
    rayfn_cli("deploy", EXAMPLE)
    call_id = _script_output(
        tmp_path / "spawn_one.py",
        "import rayfn\n"
        "f = rayfn.Function.from_name('my-job-queue', 'process_job')\n"
        "print(f.spawn('cli-data').object_id)\n",
    )
    got = rayfn_cli("call", "get", call_id, "--timeout", "60")
    assert got.stdout.strip() == "{'result': 'cli-data'}"
    status = json.loads(rayfn_cli("call", "status", call_id).stdout)
    assert status["state"] == "succeeded" and status["attempts"] == 1
    cancelled = json.loads(rayfn_cli("call", "cancel", call_id).stdout)
    assert cancelled["state"] == "succeeded"  # finished calls stay finished
    listed = rayfn_cli("call", "list", "--app", "my-job-queue", "--limit", "50")
    assert call_id in listed.stdout
    apps = json.loads(rayfn_cli("app", "list", "--json").stdout)
    assert any(a["name"] == "my-job-queue" and "process_job" in a["functions"] for a in apps)
    status_out = rayfn_cli("status").stdout
    assert "process_job" in status_out and "nodes" in status_out
    assert "registry: running since" in status_out


def test_call_logs_prints_what_the_call_printed(rayfn_cli: Cli, tmp_path: Path) -> None:
    app_file = tmp_path / "printing_app.py"
    app_file.write_text(
        "import rayfn\napp = rayfn.App('cli-logs')\n"
        "@app.function()\ndef shout(x):\n    print('heard', x)\n    return x\n"
    )
    rayfn_cli("deploy", str(app_file))
    call_id = _script_output(
        tmp_path / "spawn_and_wait.py",
        "import rayfn\n"
        "call = rayfn.Function.from_name('cli-logs', 'shout').spawn(7)\n"
        "call.get(timeout=60)\n"
        "print(call.object_id)\n",
    )
    assert rayfn_cli("call", "logs", call_id).stdout == "heard 7\n"


def test_user_mistakes_print_one_line_and_exit_nonzero(rayfn_cli: Cli, tmp_path: Path) -> None:
    broken = tmp_path / "broken_syntax.py"
    broken.write_text("import rayfn\napp = rayfn.App('x'\n")
    no_app = tmp_path / "no_app.py"
    no_app.write_text("x = 1\n")
    two_apps = tmp_path / "two_apps.py"
    two_apps.write_text(
        "import rayfn\na = rayfn.App('one')\nb = rayfn.App('two')\n"
        "@a.function()\ndef f(): return 1\n@b.function()\ndef g(): return 2\n"
    )
    cases = {
        ("call", "get", "not-an-id"): "malformed call ID",
        ("call", "status", "fc-01ARZ3NDEKTSV4RRFFQ69G5FAV"): "no call with ID",
        ("call", "logs", "fc-01ARZ3NDEKTSV4RRFFQ69G5FAV"): "no call with ID",
        ("deploy", str(broken)): "syntax error",
        ("deploy", str(no_app)): "defines no rayfn App",
        ("deploy", str(two_apps)): "defines 2 Apps",
        ("deploy", str(tmp_path / "missing.py")): "no such file",
        ("app", "stop", "never-deployed-app"): "no deployed app",
    }
    for args, message in cases.items():
        result = rayfn_cli(*args, check=False)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr + result.stdout
    two = rayfn_cli("deploy", f"{two_apps}::b", check=False)
    assert two.returncode == 0 and "deployed app 'two'" in two.stdout
    rayfn_cli("app", "stop", "two")
    rayfn_cli("app", "stop", "one", check=False)


def test_run_passes_typed_flags_to_the_entrypoint(rayfn_cli: Cli, tmp_path: Path) -> None:
    script = tmp_path / "flags_app.py"
    script.write_text(
        "import rayfn\n"
        "app = rayfn.App('flags-app')\n"
        "@app.function()\n"
        "def repeat(word: str, count: int) -> str:\n"
        "    return word * count\n"
        "@app.local_entrypoint()\n"
        "def main(word: str, count: int = 2, shout: bool = False, ratio: float = 0.5):\n"
        "    out = repeat.remote(word, count)\n"
        "    print(out.upper() if shout else out, type(count).__name__, ratio * 2)\n"
    )
    result = rayfn_cli("run", str(script), "--word", "ab", "--count", "3", "--shout",
                       "--ratio", "1.5")
    assert result.stdout.strip().splitlines()[-1] == "ABABAB int 3.0"
    missing = rayfn_cli("run", str(script), check=False)
    assert missing.returncode != 0 and "--word" in missing.stderr
    pending = rayfn_cli("run", f"{script}::repeat", "--word", "x", "--count", "2")
    assert pending.stdout.strip().splitlines()[-1] == "'xx'"


def test_start_is_idempotent(rayfn_cli: Cli) -> None:
    first = rayfn_cli("start")
    second = rayfn_cli("start")
    address = re.compile(r"Ray at (\S+)")
    first_match, second_match = address.search(first.stdout), address.search(second.stdout)
    assert first_match and second_match
    assert first_match.group(1) == second_match.group(1)


def test_cli_over_http(rayfn_cli: Cli, tmp_path: Path) -> None:
    """With RAYFN_SERVER_URL and RAYFN_TOKEN, the CLI never joins the Ray cluster."""
    import os

    from rayfn.settings import get_settings
    from rayfn_service.server_process import server_url

    settings = get_settings()
    env = {
        "RAYFN_SERVER_URL": server_url(settings),
        "RAYFN_TOKEN": settings.read_token(),
        # a state dir with no Ray address in it: only HTTP can work
        "RAYFN_STATE_DIR": str(tmp_path / "remote-client"),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        assert "deployed app 'my-job-queue'" in rayfn_cli("deploy", EXAMPLE).stdout
        ran = rayfn_cli("run", EXAMPLE)
        assert ran.stdout.strip().splitlines()[-1] == "{'result': 'my-data'}"
        listed = rayfn_cli("call", "list", "--app", "my-job-queue", "--limit", "1").stdout
        call_id = re.search(r"fc-[0-9A-Z]{26}", listed)
        assert call_id, listed
        status = json.loads(rayfn_cli("call", "status", call_id.group(0)).stdout)
        assert status["state"] == "succeeded"
        assert "my-job-queue" in rayfn_cli("status").stdout
        os.environ["RAYFN_TOKEN"] = "wrong-token"
        refused = rayfn_cli("call", "status", call_id.group(0), check=False)
        assert refused.returncode == 1 and "bearer token" in refused.stderr
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
