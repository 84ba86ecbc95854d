"""``FilePatternMatcher``: which local files ``add_local_dir(ignore=...)`` leaves out,
with .dockerignore-style patterns (``*``, ``**``, ``!`` to re-include)."""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Iterable
from pathlib import Path

__all__ = ["FilePatternMatcher"]


class FilePatternMatcher:
    """``matcher(path)`` is True when a pattern matches the path (relative, with ``/``)."""

    def __init__(self, *patterns: str, inverted: bool = False) -> None:
        self.patterns = tuple(p.strip() for p in patterns if p.strip()
                              and not p.strip().startswith("#"))
        self.inverted = inverted

    @classmethod
    def from_file(cls, path: str | Path) -> FilePatternMatcher:
        return cls(*Path(path).read_text().splitlines())

    def __invert__(self) -> FilePatternMatcher:
        return FilePatternMatcher(*self.patterns, inverted=not self.inverted)

    def __call__(self, path: str | Path) -> bool:
        return self._matches(Path(path).as_posix()) != self.inverted

    def can_prune_directories(self) -> bool:
        return not self.inverted and not any(p.startswith("!") for p in self.patterns)

    def _matches(self, path: str) -> bool:
        path = posixpath.normpath(path).lstrip("/")
        matched = False
        for pattern in self.patterns:
            negate = pattern.startswith("!")
            body = pattern[1:] if negate else pattern
            if _match(body.strip("/"), path):
                matched = not negate
        return matched


def _match(pattern: str, path: str) -> bool:
    """A pattern matches the path or one of its parent directories."""
    candidates: Iterable[str] = [path] + [
        "/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 1)]
    for candidate in candidates:
        if fnmatch.fnmatchcase(candidate, pattern) or (
                "**" in pattern and fnmatch.fnmatchcase(candidate, pattern.replace("**/", ""))):
            return True
    return False
