"""``rayfn.Volume``: Modal's Volume, a named directory every node of the cluster shares.

vol = rayfn.Volume.from_name("data", create_if_missing=True)
@app.function(volumes={"/data": vol})  # the call reads and writes /data as files

A volume is a folder under the cluster's volume root (``Settings.volume_root``, a shared
filesystem on a real cluster), mounted into a call as a symbolic link. Outside calls the
SDK reads and writes it through the registry (``listdir``, ``read_file``,
``batch_upload``...), over Ray or REST alike.

Unlike Modal's, writes are seen by every node at once (the filesystem is shared):
``commit()`` only flushes this node's writes to the filesystem (``os.sync``) and
``reload()`` does nothing; both are kept so Modal code runs unchanged.
"""

from __future__ import annotations

import enum
import os
import secrets
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import IO, Any

from rayfn._aio import aio_function, aio_iter_method, aio_method, run_blocking
from rayfn._client import get_client
from rayfn.exception import ConflictError, InvalidError, NotFoundError
from rayfn.protocol.names import validate_name
from rayfn.protocol.operations import RegistryApi
from rayfn.protocol.volumes import DIRECTORY, VolumeEntry, VolumeInfo, validate_volume_path

__all__ = ["FileEntry", "FileEntryType", "Volume", "VolumeUpload", "create_missing"]

# Bytes one read or write request moves (well under the REST server's body limit).
CHUNK_BYTES = 1024 * 1024


class FileEntryType(enum.IntEnum):
    UNSPECIFIED = 0
    FILE = 1
    DIRECTORY = 2


@dataclass(frozen=True)
class FileEntry:
    """A file or directory of a volume, ``path`` relative to the volume's root."""

    path: str
    type: FileEntryType
    mtime: float
    size: int

    @classmethod
    def of(cls, entry: VolumeEntry) -> FileEntry:
        kind = FileEntryType.DIRECTORY if entry.type == DIRECTORY else FileEntryType.FILE
        return cls(entry.path, kind, entry.mtime, entry.size)


class Volume:
    """A directory under the cluster's volume root, mounted at a path of the call's
    process with ``volumes={"/path": volume}``. A handle does nothing when made; with
    ``create_if_missing`` the volume is made on first use (or when an app mounting it is
    deployed)."""

    def __init__(self, name: str, *, create_if_missing: bool = False) -> None:
        self.name = validate_name("volume", name)
        self.create_if_missing = create_if_missing
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.name,), {"create_if_missing": self.create_if_missing}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.create_if_missing = bool(state.get("create_if_missing"))

    @classmethod
    def from_name(cls, name: str, *, create_if_missing: bool = False,
                  environment_name: str | None = None, version: int | None = None) -> Volume:
        if not isinstance(name, str):
            raise InvalidError(f"a volume name must be a string, not {name!r}")
        if not isinstance(create_if_missing, bool):
            raise InvalidError(f"create_if_missing must be True or False, not "
                               f"{create_if_missing!r}")
        return cls(name, create_if_missing=create_if_missing)

    @classmethod
    @contextmanager
    def ephemeral(cls) -> Iterator[Volume]:
        """A new volume of its own, deleted (with all it holds) when the block ends."""
        volume = cls(f"ephemeral-{secrets.token_hex(16)}")
        get_client().call(RegistryApi.volume_create, volume.name, False)
        try:
            yield volume
        finally:
            get_client().call(RegistryApi.volume_delete, volume.name)

    @aio_function
    def delete(name: str) -> None:  # noqa: N805 - static, as Modal's
        """Delete the volume named ``name`` and every file in it."""
        get_client().call(RegistryApi.volume_delete, validate_name("volume", name))

    @aio_function
    def create(name: str) -> VolumeInfo:  # noqa: N805 - static
        """Make an empty volume; ConflictError if there is one of that name."""
        return get_client().call(RegistryApi.volume_create, validate_name("volume", name))

    def _ready(self) -> str:
        if self.create_if_missing:
            with self._lock:
                if self.create_if_missing:
                    get_client().call(RegistryApi.volume_create, self.name, True)
                    self.create_if_missing = False
        return self.name

    @aio_method
    def hydrate(self) -> Volume:
        """Check that the volume exists (making it with ``create_if_missing``)."""
        get_client().call(RegistryApi.volume_listdir, self._ready(), "", False)
        return self

    @aio_method
    def commit(self) -> None:
        """Flush this node's writes to the shared filesystem. They are visible to every
        node already; Modal code that commits keeps working."""
        os.sync()

    @aio_method
    def reload(self) -> None:
        """Nothing to do: other nodes' writes are visible at once on a shared filesystem."""

    @aio_method
    def listdir(self, path: str, *, recursive: bool = False) -> list[FileEntry]:
        """The entries of the directory ``path`` (a file's own entry for a file)."""
        entries = get_client().call(RegistryApi.volume_listdir, self._ready(),
                                    validate_volume_path(path), recursive)
        return [FileEntry.of(e) for e in entries]

    @aio_iter_method
    def iterdir(self, path: str, *, recursive: bool = True) -> Iterator[FileEntry]:
        return iter(self.listdir(path, recursive=recursive))

    @aio_iter_method
    def read_file(self, path: str) -> Iterator[bytes]:
        """The file's bytes, a chunk per request."""
        name, path = self._ready(), validate_volume_path(path, root_ok=False)

        def chunks() -> Iterator[bytes]:
            offset = 0
            while True:
                chunk = get_client().call(RegistryApi.volume_read, name, path, offset,
                                          CHUNK_BYTES)
                if chunk:
                    yield chunk
                if len(chunk) < CHUNK_BYTES:
                    return
                offset += len(chunk)

        return chunks()

    @aio_method
    def read_file_into_fileobj(self, path: str, fileobj: IO[bytes]) -> int:
        """Write the file into ``fileobj``; returns how many bytes."""
        size = 0
        for chunk in self.read_file(path):
            fileobj.write(chunk)
            size += len(chunk)
        return size

    @aio_method
    def remove_file(self, path: str, *, recursive: bool = False) -> None:
        get_client().call(RegistryApi.volume_remove, self._ready(),
                          validate_volume_path(path, root_ok=False), recursive)

    @aio_method
    def copy_files(self, src_paths: Iterable[str], dst_path: str) -> None:
        """Copy files or directories within the volume; into ``dst_path`` when it is a
        directory, ends with ``/`` or several are given."""
        sources = [validate_volume_path(p, root_ok=False) for p in src_paths]
        validate_volume_path(dst_path)  # sent as given: a trailing / means "into"
        get_client().call(RegistryApi.volume_copy, self._ready(), sources, dst_path)

    def batch_upload(self, force: bool = False) -> VolumeUpload:
        """``with vol.batch_upload() as batch: batch.put_file(...)``: the files are
        uploaded when the block ends (not at all if it raises). A file already in the
        volume is an error unless ``force``."""
        return VolumeUpload(self, force)


class VolumeUpload:
    def __init__(self, volume: Volume, force: bool) -> None:
        self._volume = volume
        self._force = force
        self._files: list[tuple[Path | IO[bytes], str]] = []

    def put_file(self, local_file: str | Path | IO[bytes], remote_path: str) -> None:
        source = Path(local_file) if isinstance(local_file, (str, Path)) else local_file
        self._files.append((source, validate_volume_path(remote_path, root_ok=False)))

    def put_directory(self, local_path: str | Path, remote_path: str) -> None:
        local = Path(local_path)
        if not local.is_dir():
            raise InvalidError(f"{local} is not a directory")
        base = PurePosixPath("/", validate_volume_path(remote_path))
        for file in sorted(p for p in local.rglob("*") if p.is_file()):
            self.put_file(file, str(base / file.relative_to(local).as_posix()))

    def __enter__(self) -> VolumeUpload:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self._upload()

    async def __aenter__(self) -> VolumeUpload:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is None:
            await run_blocking(self._upload)

    def _upload(self) -> None:
        name, client = self._volume._ready(), get_client()
        if not self._force:
            for _, remote in self._files:
                try:
                    client.call(RegistryApi.volume_listdir, name, remote, False)
                except NotFoundError:
                    continue  # free to write
                raise ConflictError(f"{remote!r} is in Volume {name!r} already: "
                                      "pass force=True to overwrite it")
        for source, remote in self._files:
            with (source.open("rb") if isinstance(source, Path) else _kept(source)) as f:
                upload, offset = uuid.uuid4().hex, 0
                chunk = f.read(CHUNK_BYTES)
                while True:
                    following = f.read(CHUNK_BYTES) if len(chunk) == CHUNK_BYTES else b""
                    client.call(RegistryApi.volume_write, name, remote, upload, offset,
                                chunk, not following)
                    if not following:
                        break
                    offset += len(chunk)
                    chunk = following


@contextmanager
def _kept(fileobj: IO[bytes]) -> Iterator[IO[bytes]]:
    """A caller's file object, read but left open."""
    yield fileobj


def create_missing(volumes: Iterable[object]) -> None:
    """Make the ``create_if_missing`` volumes among ``volumes`` (before a deploy, whose
    check refuses volumes that do not exist)."""
    for volume in volumes:
        if isinstance(volume, Volume):
            volume._ready()
