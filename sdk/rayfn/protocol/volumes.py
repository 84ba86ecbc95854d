"""What the SDK and the registry agree on about Volumes: the records, the limits, and the
check of a path inside a volume (the SDK makes it to fail early, the registry because it
trusts no client)."""

from __future__ import annotations

import dataclasses

from rayfn.exception import InvalidError

__all__ = [
    "FILE",
    "DIRECTORY",
    "MAX_CHUNK_BYTES",
    "MAX_PATH_CHARS",
    "VolumeEntry",
    "VolumeInfo",
    "validate_volume_path",
]

FILE = "file"
DIRECTORY = "dir"
# One read or write moves at most this much (a REST body carries it as base64).
MAX_CHUNK_BYTES = 4 * 1024 * 1024
MAX_PATH_CHARS = 4096


@dataclasses.dataclass(frozen=True, slots=True)
class VolumeInfo:
    name: str
    created_at: float


@dataclasses.dataclass(frozen=True, slots=True)
class VolumeEntry:
    """A file or directory of a volume; ``path`` relative to the volume's root."""

    path: str
    type: str  # FILE or DIRECTORY
    size: int
    mtime: float


def validate_volume_path(path: object, *, root_ok: bool = True) -> str:
    """``path`` normalized and relative to the volume's root ("" is the root itself).
    A leading ``/`` is the volume's root, as in Modal; ``..`` past the root, NUL, and
    paths beyond ``MAX_PATH_CHARS`` are refused."""
    if not isinstance(path, str):
        raise InvalidError(f"a volume path must be a string, not {type(path).__name__}")
    if "\0" in path:
        raise InvalidError("a volume path cannot hold a NUL character")
    if len(path) > MAX_PATH_CHARS:
        raise InvalidError(f"a volume path is at most {MAX_PATH_CHARS} characters")
    parts: list[str] = []
    for part in path.split("/"):
        if part == "..":
            if not parts:
                raise InvalidError(f"volume path {path!r} leaves the volume")
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    relative = "/".join(parts)
    if not relative and not root_ok:
        raise InvalidError("this needs a path inside the volume, not its root")
    return relative
