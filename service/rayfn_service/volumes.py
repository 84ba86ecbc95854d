"""Volumes in the registry: one directory each under the shared volume root, read and
written here for clients outside the cluster (calls use their mounts directly).

Every path a client names is checked twice: as text (``validate_volume_path``) and, once
resolved on disk, to still be inside the volume, so a symbolic link a call left in the
volume cannot lead a client's read or write elsewhere on the registry's node. The disk
I/O runs in threads (``asyncio.to_thread``): the registry's event loop never blocks on it.
A write is staged into a hidden temporary file and renamed into place on its last chunk,
so readers see the old file or the whole new one.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from rayfn.exception import ConflictError, InvalidError, NotFoundError
from rayfn.protocol.names import validate_name
from rayfn.protocol.volumes import (
    DIRECTORY,
    FILE,
    MAX_CHUNK_BYTES,
    VolumeEntry,
    VolumeInfo,
    validate_volume_path,
)

__all__ = ["Volumes", "inside"]

T = TypeVar("T")

_STAGING = ".rayfn-upload-"
# Entries one listdir returns at most (a recursive listing of a huge tree is refused).
MAX_ENTRIES = 100_000


def inside(folder: Path, path: object, *, root_ok: bool = True) -> Path:
    """The resolved ``folder / path``; InvalidError when the path, or a symbolic link on
    the way, leads out of ``folder``."""
    relative = validate_volume_path(path, root_ok=root_ok)
    base = folder.resolve()
    target = (base / relative).resolve()
    if target != base and base not in target.parents:
        raise InvalidError(f"volume path {path!r} leads out of the volume")
    return target


async def _run(fn: Callable[[], T]) -> T:
    """``fn`` in a thread; the disk's own errors become rayfn's (a 4xx over REST)."""
    try:
        return await asyncio.to_thread(fn)
    except FileNotFoundError as exc:
        raise NotFoundError(f"not found in the volume: {exc.strerror}") from None
    except (OSError, shutil.Error) as exc:
        raise InvalidError(f"the volume refused it: {exc}") from None


def _int(value: object, what: str, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidError(f"{what} must be an integer >= {low}, not {value!r}")
    return value


class Volumes:
    def __init__(self, root: Path) -> None:
        self._root = root

    def _folder(self, name: object) -> Path:
        if not isinstance(name, str):
            raise InvalidError(f"a volume name must be a string, not {name!r}")
        return self._root / validate_name("volume", name)

    def _existing(self, name: object) -> Path:
        folder = self._folder(name)
        if not folder.is_dir():
            raise NotFoundError(f"Volume {name!r} not found")
        return folder

    def exists(self, name: str) -> bool:
        return self._folder(name).is_dir()

    async def create(self, name: str, exist_ok: bool = False) -> VolumeInfo:
        folder = self._folder(name)

        def make() -> VolumeInfo:
            self._root.mkdir(parents=True, exist_ok=True)
            try:
                folder.mkdir()
            except FileExistsError:
                if not exist_ok:
                    raise ConflictError(f"Volume {name!r} already exists") from None
            return VolumeInfo(folder.name, folder.stat().st_mtime)

        return await _run(make)

    async def all(self) -> list[VolumeInfo]:
        def scan() -> list[VolumeInfo]:
            if not self._root.is_dir():
                return []
            return sorted((VolumeInfo(p.name, p.stat().st_mtime) for p in self._root.iterdir()
                           if p.is_dir() and not p.is_symlink()), key=lambda v: v.name)

        return await _run(scan)

    async def delete(self, name: str) -> None:
        folder = self._existing(name)
        await _run(lambda: shutil.rmtree(folder))

    async def listdir(self, name: str, path: str, recursive: bool = False
                      ) -> list[VolumeEntry]:
        folder = self._existing(name)
        target = inside(folder, path)

        def scan() -> list[VolumeEntry]:
            if not target.exists():
                raise NotFoundError(f"{path!r} not found in Volume {name!r}")
            base = folder.resolve()
            if target.is_file():
                return [_entry(base, target)]
            found: list[VolumeEntry] = []
            walk = target.rglob("*") if recursive else target.iterdir()
            for child in walk:
                if child.name.startswith(_STAGING):
                    continue
                found.append(_entry(base, child))
                if len(found) > MAX_ENTRIES:
                    raise InvalidError(f"more than {MAX_ENTRIES} entries: list a subdirectory")
            return sorted(found, key=lambda e: e.path)

        return await _run(scan)

    async def read(self, name: str, path: str, offset: int, length: int) -> bytes:
        target = inside(self._existing(name), path, root_ok=False)
        offset = _int(offset, "offset")
        length = min(_int(length, "length"), MAX_CHUNK_BYTES)

        def read() -> bytes:
            if not target.is_file():
                raise NotFoundError(f"no file {path!r} in Volume {name!r}")
            with target.open("rb") as f:
                f.seek(offset)
                return f.read(length)

        return await _run(read)

    async def write(self, name: str, path: str, upload: str, offset: int, data: bytes,
                    final: bool) -> None:
        """Write ``data`` at ``offset`` of the upload ``upload`` (a client-chosen hex ID,
        one per file); with ``final`` the file replaces ``path`` at once."""
        target = inside(self._existing(name), path, root_ok=False)
        if not isinstance(upload, str) or not upload.isalnum() or len(upload) > 64:
            raise InvalidError("upload must be an ID of letters and digits")
        if not isinstance(data, bytes) or len(data) > MAX_CHUNK_BYTES:
            raise InvalidError(f"data must be bytes, at most {MAX_CHUNK_BYTES} a chunk")
        offset = _int(offset, "offset")
        staged = target.with_name(f"{_STAGING}{upload}")

        def write() -> None:
            if target.is_dir():
                raise InvalidError(f"{path!r} is a directory in Volume {name!r}")
            target.parent.mkdir(parents=True, exist_ok=True)
            if offset:  # chunks come in order: no holes, no sparse files of any size
                if not staged.is_file():
                    raise NotFoundError(f"upload {upload!r} of {path!r} was not started")
                if staged.stat().st_size != offset:
                    raise InvalidError(f"upload {upload!r} has {staged.stat().st_size} "
                                       f"bytes; the next chunk starts there, not at {offset}")
            with staged.open("ab" if offset else "wb") as f:
                f.write(data)
            if final:
                os.replace(staged, target)

        await _run(write)

    async def remove(self, name: str, path: str, recursive: bool = False) -> None:
        target = inside(self._existing(name), path, root_ok=False)

        def remove() -> None:
            if target.is_dir():
                if recursive:
                    shutil.rmtree(target)
                else:
                    try:
                        target.rmdir()
                    except OSError:
                        raise InvalidError(f"{path!r} is a directory that is not empty: "
                                           "remove it with recursive=True") from None
            elif target.exists():
                target.unlink()
            else:
                raise NotFoundError(f"{path!r} not found in Volume {name!r}")

        await _run(remove)

    async def copy(self, name: str, sources: Sequence[str], dest: str) -> None:
        """Copy files or directories; into ``dest`` when it is a directory, ends with
        ``/`` or several sources are given, else to ``dest`` itself."""
        folder = self._existing(name)
        if not isinstance(sources, (list, tuple)) or not sources:
            raise InvalidError("copy needs a list of source paths")
        froms = [inside(folder, s, root_ok=False) for s in sources]
        to = inside(folder, dest)

        def copy() -> None:
            into = to.is_dir() or len(froms) > 1 or dest.endswith("/")
            if into:
                to.mkdir(parents=True, exist_ok=True)
            for source, given in zip(froms, sources, strict=True):
                if not source.exists():
                    raise NotFoundError(f"{given!r} not found in Volume {name!r}")
                goal = to / source.name if into else to
                if source.is_dir():
                    shutil.copytree(source, goal, symlinks=True, dirs_exist_ok=True)
                else:
                    goal.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(source, goal)

        await _run(copy)


def _entry(base: Path, path: Path) -> VolumeEntry:
    stat = path.stat() if path.exists() else path.lstat()  # a dangling link: itself
    kind = DIRECTORY if path.is_dir() else FILE
    return VolumeEntry(path.relative_to(base).as_posix(), kind,
                       0 if kind == DIRECTORY else stat.st_size, stat.st_mtime)
