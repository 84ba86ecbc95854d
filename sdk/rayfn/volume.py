"""Volume: a named directory every node of the cluster shares, mounted into calls."""

from __future__ import annotations

from rayfn.exception import InvalidError
from rayfn.protocol.names import validate_name

__all__ = ["Volume"]


class Volume:
    """A directory under the cluster's volume root (``Settings.volume_root``), mounted at
    a path of the call's process with ``volumes={"/path": volume}``."""

    def __init__(self, name: str, *, create_if_missing: bool = False) -> None:
        self.name = validate_name("volume", name)
        self.create_if_missing = create_if_missing

    def __repr__(self) -> str:
        return f"Volume({self.name!r})"

    @classmethod
    def from_name(cls, name: str, *, create_if_missing: bool = False,
                  environment_name: str | None = None, version: int | None = None) -> Volume:
        if not isinstance(name, str):
            raise InvalidError(f"a volume name must be a string, not {name!r}")
        return cls(name, create_if_missing=create_if_missing)
