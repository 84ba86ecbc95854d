"""Paths a client names inside a volume: hostile ones are refused, on text and on disk."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from rayfn.exception import InvalidError, NotFoundError
from rayfn.protocol.volumes import MAX_PATH_CHARS, validate_volume_path
from rayfn_service.volumes import Volumes, inside


@pytest.mark.parametrize(("given", "normal"), [
    ("a/b.txt", "a/b.txt"), ("/a//b/./c", "a/b/c"), ("/", ""), ("a/../b", "b"),
])
def test_paths_are_normalized_relative_to_the_root(given: str, normal: str) -> None:
    assert validate_volume_path(given) == normal


@pytest.mark.parametrize("hostile", [
    "..", "../etc/passwd", "/../x", "a/../../x", "a\0b", "x" * (MAX_PATH_CHARS + 1), 7,
])
def test_hostile_paths_are_refused(hostile: object) -> None:
    with pytest.raises(InvalidError):
        validate_volume_path(hostile)


def test_the_root_is_refused_where_a_file_is_needed() -> None:
    with pytest.raises(InvalidError):
        validate_volume_path("/", root_ok=False)


def test_a_symlink_out_of_the_volume_is_refused(tmp_path: Path) -> None:
    volume, outside = tmp_path / "vol", tmp_path / "secret"
    volume.mkdir()
    outside.mkdir()
    (outside / "key").write_text("x")
    (volume / "link").symlink_to(outside, target_is_directory=True)
    (volume / "ok").symlink_to(volume / "sub")
    with pytest.raises(InvalidError):
        inside(volume, "link/key")
    assert inside(volume, "ok/f") == (volume / "sub" / "f").resolve()


def test_reads_and_writes_refuse_a_symlink_escape(tmp_path: Path) -> None:
    (tmp_path / "outside.txt").write_text("secret")
    volumes = Volumes(tmp_path / "root")
    asyncio.run(volumes.create("v"))
    (tmp_path / "root" / "v" / "leak").symlink_to(tmp_path / "outside.txt")
    with pytest.raises(InvalidError):
        asyncio.run(volumes.read("v", "leak", 0, 10))
    with pytest.raises(InvalidError):
        asyncio.run(volumes.write("v", "leak", "u1", 0, b"x", True))
    assert (tmp_path / "outside.txt").read_text() == "secret"


def test_a_write_appears_only_when_final(tmp_path: Path) -> None:
    volumes = Volumes(tmp_path)
    asyncio.run(volumes.create("v"))
    asyncio.run(volumes.write("v", "d/f.bin", "u1", 0, b"ab", False))
    assert [e.path for e in asyncio.run(volumes.listdir("v", "/", True))] == ["d"]
    asyncio.run(volumes.write("v", "d/f.bin", "u1", 2, b"cd", True))
    assert asyncio.run(volumes.read("v", "d/f.bin", 1, 10)) == b"bcd"
    entries = asyncio.run(volumes.listdir("v", "", True))
    assert [(e.path, e.type, e.size) for e in entries] == [("d", "dir", 0),
                                                          ("d/f.bin", "file", 4)]
    with pytest.raises(NotFoundError):
        asyncio.run(volumes.read("v", "nope", 0, 1))
    with pytest.raises(NotFoundError):
        asyncio.run(volumes.listdir("missing", "", False))


def test_chunks_of_an_upload_come_in_order(tmp_path: Path) -> None:
    volumes = Volumes(tmp_path)
    asyncio.run(volumes.create("v"))
    with pytest.raises(NotFoundError):
        asyncio.run(volumes.write("v", "f", "u1", 5, b"x", True))
    asyncio.run(volumes.write("v", "f", "u1", 0, b"ab", False))
    with pytest.raises(InvalidError):  # a hole: no sparse files of any size
        asyncio.run(volumes.write("v", "f", "u1", 10**12, b"x", True))
    with pytest.raises(InvalidError):
        asyncio.run(volumes.write("v", "f", "../u", 2, b"x", True))
