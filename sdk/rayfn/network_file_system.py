"""Modal's ``NetworkFileSystem`` (the older shared-disk kind): on Ray it is a Volume, a
directory every node shares, mounted with ``network_file_systems={"/path": nfs}``."""

from __future__ import annotations

from rayfn.volume import Volume

__all__ = ["NetworkFileSystem"]


class NetworkFileSystem(Volume):
    """A :class:`~rayfn.volume.Volume` under Modal's older name."""
