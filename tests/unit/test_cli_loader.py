"""Loading a user's FILE[::NAME], and turning an entrypoint's signature into typed flags."""

from __future__ import annotations

import itertools
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import click
import pytest
from click.testing import CliRunner

from rayfn.app import App, LocalEntrypoint
from rayfn.cli.flags import command_for
from rayfn.cli.loader import find_app, find_runnable, import_file, split_ref
from rayfn.exception import InvalidError
from rayfn.function import Function

_counter = itertools.count()


@pytest.fixture
def write(tmp_path: Path) -> Iterator[Any]:
    """Write a user file with a unique module name; forget the module afterwards."""
    stems: list[str] = []
    path_entry = str(tmp_path)

    def _write(source: str) -> Path:
        stem = f"rayfn_user_file_{next(_counter)}"
        stems.append(stem)
        path = tmp_path / f"{stem}.py"
        path.write_text(textwrap.dedent(source))
        return path

    yield _write
    for stem in stems:
        sys.modules.pop(stem, None)
    while path_entry in sys.path:
        sys.path.remove(path_entry)


def load(path: Path) -> ModuleType:
    return import_file(path)


ONE_APP = """
    import rayfn

    app = rayfn.App("one-app")

    @app.function()
    def square(x: int) -> int:
        return x * x

    @app.local_entrypoint()
    def main(n: int = 3) -> None:
        print(square.local(n))
"""

TWO_APPS = """
    import rayfn

    first = rayfn.App("first-app")
    second = rayfn.App("second-app")

    @first.function()
    def f() -> int:
        return 1

    @second.function()
    def g() -> int:
        return 2
"""


# ---- import_file -------------------------------------------------------------------


def test_import_file_registers_the_module_under_its_stem(write: Any) -> None:
    path = write("VALUE = 41 + 1\n")
    module = load(path)
    assert module.VALUE == 42
    assert sys.modules[path.stem] is module
    assert str(path.parent) in sys.path


def test_import_file_can_import_its_neighbours(write: Any) -> None:
    helper = write("HELP = 'from the helper'\n")
    main = write(f"from {helper.stem} import HELP\n")
    assert load(main).HELP == "from the helper"


def test_syntax_error_names_the_line(write: Any) -> None:
    path = write(
        """
        import rayfn

        def broken(:
            pass
        """
    )
    with pytest.raises(InvalidError, match=r"syntax error: line 4") as info:
        load(path)
    assert str(path) in str(info.value)


def test_missing_file_is_invalid(tmp_path: Path) -> None:
    with pytest.raises(InvalidError, match="no such file"):
        load(tmp_path / "absent.py")


def test_non_python_file_is_invalid(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(InvalidError, match=r"\.py"):
        load(path)


@pytest.mark.parametrize(
    ("ref", "path", "name"),
    [
        ("jobs.py", "jobs.py", None),
        ("jobs.py::", "jobs.py", None),
        ("jobs.py::main", "jobs.py", "main"),
        ("dir/jobs.py::app", "dir/jobs.py", "app"),
    ],
)
def test_split_ref(ref: str, path: str, name: str | None) -> None:
    assert split_ref(ref) == (Path(path), name)


# ---- find_app ----------------------------------------------------------------------


def test_find_app_takes_the_only_app(write: Any) -> None:
    path = write(ONE_APP)
    module = load(path)
    assert find_app(module, path, None) is module.app


def test_find_app_without_an_app_is_invalid(write: Any) -> None:
    path = write("x = 1\n")
    with pytest.raises(InvalidError, match="no rayfn App"):
        find_app(load(path), path, None)


def test_find_app_with_two_apps_needs_a_name(write: Any) -> None:
    path = write(TWO_APPS)
    with pytest.raises(InvalidError, match="2 Apps") as info:
        find_app(load(path), path, None)
    message = str(info.value)
    assert "first" in message and "second" in message and "::NAME" in message


@pytest.mark.parametrize("name", ["second", "second-app"])
def test_find_app_by_variable_or_app_name(write: Any, name: str) -> None:
    path = write(TWO_APPS)
    module = load(path)
    assert find_app(module, path, name) is module.second


def test_find_app_with_an_unknown_name_lists_the_apps(write: Any) -> None:
    path = write(TWO_APPS)
    with pytest.raises(InvalidError, match="third") as info:
        find_app(load(path), path, "third")
    assert "first, second" in str(info.value)


# ---- find_runnable -----------------------------------------------------------------


def test_find_runnable_prefers_the_single_entrypoint(write: Any) -> None:
    path = write(ONE_APP)
    module = load(path)
    runnable = find_runnable(module, path, None)
    assert isinstance(runnable, LocalEntrypoint)
    assert runnable is module.main and runnable.app is module.app


def test_find_runnable_by_function_name(write: Any) -> None:
    path = write(ONE_APP)
    module = load(path)
    runnable = find_runnable(module, path, "square")
    assert isinstance(runnable, Function) and runnable is module.square


def test_find_runnable_takes_the_only_function_without_entrypoints(write: Any) -> None:
    path = write(
        """
        import rayfn
        app = rayfn.App("fn-only")

        @app.function()
        def only() -> None: ...
        """
    )
    module = load(path)
    assert find_runnable(module, path, None) is module.only


def test_find_runnable_with_several_candidates_needs_a_name(write: Any) -> None:
    path = write(TWO_APPS)
    with pytest.raises(InvalidError, match="0 local entrypoints and 2 functions"):
        find_runnable(load(path), path, None)


def test_find_runnable_with_an_unknown_name_lists_candidates(write: Any) -> None:
    path = write(ONE_APP)
    with pytest.raises(InvalidError, match="'nope'") as info:
        find_runnable(load(path), path, "nope")
    assert "entrypoints: main" in str(info.value) and "functions: square" in str(info.value)


def test_find_runnable_without_an_app_is_invalid(write: Any) -> None:
    path = write("def main() -> None: ...\n")
    with pytest.raises(InvalidError, match="no rayfn App"):
        find_runnable(load(path), path, None)


def test_named_entrypoint(write: Any) -> None:
    path = write(
        """
        import rayfn
        app = rayfn.App("named")

        @app.local_entrypoint(name="go")
        def main() -> None: ...

        @app.local_entrypoint()
        def other() -> None: ...
        """
    )
    module = load(path)
    assert find_runnable(module, path, "go") is module.main
    with pytest.raises(InvalidError, match="2 local entrypoints"):
        find_runnable(module, path, None)


# ---- typed flags -------------------------------------------------------------------


def entry(count: int, name: str, ratio: float = 0.5, verbose: bool = False) -> None:
    """Process COUNT jobs."""


def run(fn: Any, args: list[str]) -> dict[str, Any]:
    """Invoke ``command_for(fn)`` with ``args``; return the keyword arguments it passed."""
    received: dict[str, Any] = {}
    command = command_for(fn, "entry", lambda **kwargs: received.update(kwargs))
    command.main(args=args, prog_name="entry", standalone_mode=False)
    return received


def test_flags_pass_typed_values() -> None:
    received = run(entry, ["--count", "3", "--name", "x", "--verbose", "--ratio", "2.5"])
    assert received == {"count": 3, "name": "x", "ratio": 2.5, "verbose": True}
    assert type(received["count"]) is int and type(received["ratio"]) is float


def test_flags_use_defaults() -> None:
    received = run(entry, ["--count", "3", "--name", "x"])
    assert received == {"count": 3, "name": "x", "ratio": 0.5, "verbose": False}


def test_bool_flag_has_a_negative_form() -> None:
    def fn(dry_run: bool = True) -> None: ...

    assert run(fn, []) == {"dry_run": True}
    assert run(fn, ["--no-dry-run"]) == {"dry_run": False}


def test_underscores_become_dashes() -> None:
    def fn(max_items: int = 1) -> None: ...

    assert run(fn, ["--max-items", "7"]) == {"max_items": 7}


def test_unannotated_parameters_are_strings() -> None:
    def fn(label, n=2):  # type: ignore[no-untyped-def]
        ...

    assert run(fn, ["--label", "5", "--n", "3"]) == {"label": "5", "n": "3"}


def test_missing_required_flag_is_a_usage_error() -> None:
    with pytest.raises(click.MissingParameter, match="count"):
        run(entry, ["--name", "x"])


def test_badly_typed_flag_is_a_usage_error() -> None:
    with pytest.raises(click.BadParameter, match="not a valid integer") as info:
        run(entry, ["--count", "three", "--name", "x"])
    assert info.value.param is not None and info.value.param.name == "count"


def test_command_help_lists_typed_options() -> None:
    command = command_for(entry, "entry", lambda **_: None)
    result = CliRunner().invoke(command, ["--help"])
    assert result.exit_code == 0
    for text in ("Process COUNT jobs.", "--count INTEGER", "--ratio FLOAT", "--verbose"):
        assert text in result.output
    assert [p.name for p in command.params] == ["count", "name", "ratio", "verbose"]
    assert [p.required for p in command.params] == [True, True, False, False]


def test_cli_runner_invocation() -> None:
    received: dict[str, Any] = {}
    command = command_for(entry, "entry", lambda **kwargs: received.update(kwargs))
    result = CliRunner().invoke(command, ["--count", "3", "--name", "x", "--verbose"])
    assert result.exit_code == 0, result.output
    assert received == {"count": 3, "name": "x", "ratio": 0.5, "verbose": True}


def test_var_args_cannot_become_flags() -> None:
    def fn(*args: int, **kwargs: int) -> None: ...

    with pytest.raises(InvalidError, match=r"\*args"):
        command_for(fn, "fn", lambda **_: None)


def test_entrypoint_in_a_user_file_gets_flags(write: Any) -> None:
    path = write(ONE_APP)
    runnable = find_runnable(load(path), path, None)
    assert isinstance(runnable, LocalEntrypoint)
    assert run(runnable.fn, ["--n", "4"]) == {"n": 4}
    assert run(runnable.fn, []) == {"n": 3}


def test_app_objects_are_found_by_type_not_name(write: Any) -> None:
    path = write(
        """
        import rayfn
        jobs = rayfn.App("jobs")
        not_an_app = "App"
        """
    )
    module = load(path)
    app = find_app(module, path, None)
    assert isinstance(app, App) and app.name == "jobs"
