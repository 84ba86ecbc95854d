"""rayfn.Volume on a real Ray: calls write through their mount path; other calls, the SDK
(over Ray and REST) and the CLI see the same files."""

from __future__ import annotations

import io
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import rayfn
from rayfn.exception import ConflictError, InvalidError, NotFoundError
from rayfn.volume import FileEntryType


@pytest.fixture
def mount_dir() -> Iterator[str]:
    """A mount path no other test uses (the symbolic link is made on the worker's node)."""
    base = Path(f"/tmp/rayfn-vol-{secrets.token_hex(6)}")
    try:
        yield str(base / "data")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    executable = Path(sys.executable).parent / "rayfn"
    return subprocess.run([str(executable), *args], capture_output=True, timeout=180,
                          text=True, env={**os.environ, "COLUMNS": "200"})


def test_calls_the_sdk_and_the_cli_share_a_volume(unique_app: str, mount_dir: str,
                                                   tmp_path: Path) -> None:
    name = f"vol-{secrets.token_hex(6)}"
    vol = rayfn.Volume.from_name(name, create_if_missing=True)
    app = rayfn.App(unique_app, volumes={mount_dir: vol})

    @app.function()
    def write(text: str) -> None:
        os.makedirs(f"{mount_dir}/notes", exist_ok=True)
        with open(f"{mount_dir}/notes/a.txt", "w") as f:
            f.write(text)
        vol.commit()

    @app.function()
    def read() -> str:
        vol.reload()
        with open(f"{mount_dir}/notes/a.txt") as f:
            return f.read()

    app.deploy()
    write.remote("hello volume")
    assert read.remote() == "hello volume"
    # The SDK, outside calls, through the registry.
    assert b"".join(vol.read_file("/notes/a.txt")) == b"hello volume"
    entries = vol.listdir("/", recursive=True)
    assert [(e.path, e.type) for e in entries] == [("notes", FileEntryType.DIRECTORY),
                                                   ("notes/a.txt", FileEntryType.FILE)]
    assert entries[1].size == len("hello volume")
    # The CLI, a process of its own.
    got = _cli("volume", "get", name, "notes/a.txt", "-")
    assert got.returncode == 0, got.stderr
    assert got.stdout == "hello volume"
    assert name in _cli("volume", "list").stdout
    assert "notes/a.txt" in _cli("volume", "ls", name, "-r").stdout
    local = tmp_path / "up.txt"
    local.write_text("from the cli")
    assert _cli("volume", "put", name, str(local), "/cli/").returncode == 0
    assert b"".join(vol.read_file("cli/up.txt")) == b"from the cli"
    assert _cli("volume", "rm", name, "cli", "-r").returncode == 0
    assert _cli("volume", "delete", name, "--yes").returncode == 0
    assert _cli("volume", "get", name, "notes/a.txt").returncode == 1


@pytest.mark.usefixtures("transport")
def test_batch_upload_then_a_call_reads_the_files(unique_app: str, mount_dir: str,
                                                  tmp_path: Path) -> None:
    (tmp_path / "tree" / "sub").mkdir(parents=True)
    (tmp_path / "tree" / "sub" / "b.bin").write_bytes(bytes(range(256)) * 5000)  # 1.2 MiB
    (tmp_path / "tree" / "c.txt").write_text("c")
    with rayfn.Volume.ephemeral() as vol:
        with vol.batch_upload() as batch:
            batch.put_file(io.BytesIO(b"from memory"), "/one.txt")
            batch.put_directory(tmp_path / "tree", "/tree")
        with pytest.raises(ConflictError):
            with vol.batch_upload() as batch:
                batch.put_file(io.BytesIO(b"again"), "one.txt")
        with vol.batch_upload(force=True) as batch:
            batch.put_file(io.BytesIO(b"replaced"), "one.txt")
        vol.copy_files(["one.txt"], "copies/")
        app = rayfn.App(unique_app)

        @app.function(volumes={mount_dir: vol})
        def sizes() -> dict[str, int]:
            root = Path(mount_dir)
            return {p.relative_to(root).as_posix(): p.stat().st_size
                    for p in root.rglob("*") if p.is_file()}

        with app.run():
            assert sizes.remote() == {"one.txt": 8, "copies/one.txt": 8, "tree/c.txt": 1,
                                      "tree/sub/b.bin": 256 * 5000}
        out = io.BytesIO()
        assert vol.read_file_into_fileobj("tree/sub/b.bin", out) == 256 * 5000
        assert out.getvalue() == bytes(range(256)) * 5000
        vol.remove_file("tree", recursive=True)
        assert [e.path for e in vol.listdir("/")] == ["copies", "one.txt"]
        with pytest.raises(InvalidError):
            vol.listdir("../..")
        with pytest.raises(NotFoundError):
            b"".join(vol.read_file("tree/c.txt"))
        name = vol.name
    with pytest.raises(NotFoundError):
        rayfn.Volume.from_name(name).listdir("/")


def test_a_deploy_mounting_a_missing_volume_fails(unique_app: str, mount_dir: str) -> None:
    app = rayfn.App(unique_app)
    missing = f"missing-{secrets.token_hex(6)}"

    @app.function(volumes={mount_dir: rayfn.Volume.from_name(missing)})
    def f() -> None: ...

    with pytest.raises(NotFoundError, match=f"{missing}.*{unique_app}.f"):
        app.deploy()
