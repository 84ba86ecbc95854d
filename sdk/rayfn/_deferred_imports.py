"""``with image.imports():`` blocks, run again where the calls run.

Modal imports a user's file anew in each container, so the block's imports run there. A
rayfn function is shipped by value instead, and a name the block could not bind locally
(the package is only in the image) would be missing in the worker. So the block's
statements are recorded, by the file they are in, and shipped with each function of that
file: unpickling the function in the worker runs them first, in the function's globals.
"""

from __future__ import annotations

import ast
import functools
import logging
import sys
from types import FrameType, TracebackType
from typing import Any

__all__ = ["ImportBlock", "shipped_with_imports"]

logger = logging.getLogger(__name__)

# The import blocks of each source file, in the order they ran.
_blocks: dict[str, list[str]] = {}


class ImportBlock:
    """What ``Image.imports()`` returns: a block whose ImportError is suppressed locally
    (the package may be only in the image) and whose statements are recorded."""

    def __init__(self) -> None:
        self._file: str | None = None
        self._line = 0

    def __enter__(self) -> None:
        frame: FrameType | None = sys._getframe(1)
        while frame is not None and frame.f_code.co_filename == __file__:
            frame = frame.f_back
        if frame is not None:
            self._file, self._line = frame.f_code.co_filename, frame.f_lineno

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        if self._file is not None:
            source = _block_source(self._file, self._line)
            if source and source not in _blocks.setdefault(self._file, []):
                _blocks[self._file].append(source)
        if exc_type is not None and issubclass(exc_type, ImportError):
            from rayfn.call_context import is_local

            if is_local():
                logger.debug("suppressed in image.imports(): %s", exc)
                return True
        return False


@functools.lru_cache(maxsize=64)
def _parsed(path: str) -> ast.Module | None:
    try:
        with open(path, encoding="utf-8") as source:
            return ast.parse(source.read())
    except (OSError, SyntaxError, ValueError):
        return None


def _block_source(path: str, line: int) -> str | None:
    tree = _parsed(path)
    if tree is None:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.With) and node.lineno <= line <= (node.end_lineno or line) \
                and node.body and node.body[0].lineno > line - 1:
            return ast.unparse(ast.Module(body=node.body, type_ignores=[]))
    return None


def blocks_of(code: object) -> list[str]:
    """The import blocks of the file ``code`` (a function or class) was defined in."""
    module = sys.modules.get(getattr(code, "__module__", "") or "")
    path = getattr(module, "__file__", None)
    return list(_blocks.get(path, ())) if path else []


class _Shipped:
    def __init__(self, code: object, sources: list[str]) -> None:
        self.code, self.sources = code, sources

    def __reduce__(self) -> tuple[Any, ...]:
        return _restore, (self.code, self.sources)


def shipped_with_imports(code: object) -> object:
    """What to pickle for ``code``: itself, or with its file's import blocks to run first."""
    sources = blocks_of(code)
    return _Shipped(code, sources) if sources else code


def _restore(code: object, sources: list[str]) -> object:
    """Run the import blocks in the globals of ``code``, then give ``code`` back."""
    namespace = _globals_of(code)
    for source in sources:
        exec(compile(source, "<image.imports()>", "exec", dont_inherit=True), namespace)
    return code


def _globals_of(code: object) -> dict[str, Any]:
    candidates = [code] + (list(vars(code).values()) if isinstance(code, type) else [])
    for candidate in candidates:
        target = getattr(candidate, "__func__", candidate)
        target = getattr(target, "__wrapped__", target)
        found = getattr(target, "__globals__", None)
        if isinstance(found, dict):
            return found
    module = sys.modules.get(getattr(code, "__module__", "") or "")
    return vars(module) if module is not None else {}
