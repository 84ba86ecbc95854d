"""``rayfn secret`` as a user runs it, against the session's service."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from rayfn.protocol.ids import new_call_id

Cli = Callable[..., subprocess.CompletedProcess[str]]


def test_secret_commands(rayfn_cli: Cli, tmp_path: Path) -> None:
    name = f"cli-{new_call_id()[-10:].lower()}"
    dotenv = tmp_path / "prod.env"
    dotenv.write_text("FROM_FILE=file-value-123\n")
    created = rayfn_cli("secret", "create", name, "PLAIN=plain-value-456",
                        "--from-dotenv", str(dotenv))
    assert "FROM_FILE, PLAIN" in created.stdout and "value-" not in created.stdout
    again = rayfn_cli("secret", "create", name, "PLAIN=x", check=False)
    assert again.returncode == 1 and "already exists" in again.stderr
    rayfn_cli("secret", "create", name, "PLAIN=replaced", "--force")
    listed = rayfn_cli("secret", "list").stdout
    assert name in listed and "PLAIN" in listed and "replaced" not in listed
    assert "inline-" not in listed
    status = rayfn_cli("status").stdout
    assert "replaced" not in status and "file-value-123" not in status
    rayfn_cli("secret", "delete", name)
    assert name not in rayfn_cli("secret", "list", "--all").stdout
    gone = rayfn_cli("secret", "delete", name, check=False)
    assert gone.returncode == 1 and "not found" in gone.stderr
