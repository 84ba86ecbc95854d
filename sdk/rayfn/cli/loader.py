"""Load a user's file (``FILE[::NAME]``) and find its App, entrypoint or function."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from rayfn.app import App, LocalEntrypoint
from rayfn.exception import InvalidError
from rayfn.function import Function


def split_ref(ref: str) -> tuple[Path, str | None]:
    path, sep, name = ref.partition("::")
    return Path(path), (name or None) if sep else None


def import_file(path: Path) -> ModuleType:
    """Import ``path`` as a module named after the file, with its folder on sys.path."""
    if not path.exists():
        raise InvalidError(f"no such file: {path}")
    if path.suffix != ".py":
        raise InvalidError(f"{path} is not a Python file (.py)")
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    module_name = path.stem
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise InvalidError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(module_name, None)
            raise
    except SyntaxError as exc:
        raise InvalidError(f"{path} has a syntax error: line {exc.lineno}: {exc.msg}") from None
    except InvalidError as exc:  # rayfn refused something the file declares
        raise InvalidError(f"{path}: {exc}") from None
    except Exception as exc:
        line = _line_in(exc, path)
        raise InvalidError(
            f"{path} failed to import{line}: {type(exc).__name__}: {exc}"
        ) from None
    return module


def _line_in(exc: BaseException, path: Path) -> str:
    """`` (line N)`` of the deepest frame of the traceback that is in ``path``."""
    line = ""
    tb = exc.__traceback__
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename).resolve() == path.resolve():
            line = f" (line {tb.tb_lineno})"
        tb = tb.tb_next
    return line


def apps_in(module: ModuleType) -> dict[str, App]:
    return {name: value for name, value in vars(module).items() if isinstance(value, App)}


def find_app(module: ModuleType, path: Path, name: str | None) -> App:
    apps = apps_in(module)
    if name is not None:
        if name in apps:
            return apps[name]
        by_app_name = [a for a in apps.values() if a.name == name]
        if len(by_app_name) == 1:
            return by_app_name[0]
        raise InvalidError(f"{path} has no App named {name!r} (found: {_names(apps)})")
    if not apps:
        raise InvalidError(f"{path} defines no rayfn App")
    if len(apps) > 1:
        raise InvalidError(
            f"{path} defines {len(apps)} Apps ({_names(apps)}); choose one with {path}::NAME"
        )
    return next(iter(apps.values()))


def find_runnable(
    module: ModuleType, path: Path, name: str | None
) -> LocalEntrypoint | Function[..., Any]:
    """The entrypoint (or function) ``rayfn run`` should call."""
    apps = apps_in(module)
    if not apps:
        raise InvalidError(f"{path} defines no rayfn App")
    entrypoints = {n: e for a in apps.values() for n, e in a.registered_entrypoints.items()}
    functions = {n: f for a in apps.values() for n, f in a.registered_functions.items()}
    if name is not None:
        if name in entrypoints:
            return entrypoints[name]
        if name in functions:
            return functions[name]
        raise InvalidError(
            f"{path} has no local entrypoint or function {name!r} "
            f"(entrypoints: {_names(entrypoints)}; functions: {_names(functions)})"
        )
    if len(entrypoints) == 1:
        return next(iter(entrypoints.values()))
    if not entrypoints and len(functions) == 1:
        return next(iter(functions.values()))
    raise InvalidError(
        f"{path} has {len(entrypoints)} local entrypoints and {len(functions)} functions; "
        f"choose one with {path}::NAME"
    )


def _names(items: dict[str, Any]) -> str:
    return ", ".join(sorted(items)) or "none"
