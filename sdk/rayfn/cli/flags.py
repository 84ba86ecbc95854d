"""Turn an entrypoint's parameters into typed ``--flags``, as ``modal run`` does."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, get_type_hints

import click

from rayfn.cli.output import harmless
from rayfn.exception import InvalidError

_TYPES: dict[Any, Any] = {int: click.INT, float: click.FLOAT, str: click.STRING}


def _option(param: inspect.Parameter, annotation: Any) -> click.Option:
    flag = "--" + param.name.replace("_", "-")
    required = param.default is inspect.Parameter.empty
    default = None if required else param.default
    if annotation is bool:
        return click.Option(
            [f"{flag}/--no-{param.name.replace('_', '-')}"], default=bool(default),
            show_default=True,
        )
    param_type = _TYPES.get(annotation, click.STRING)
    if required:  # no default at all: click then reports the missing flag
        return click.Option([flag, param.name], type=param_type, required=True)
    return click.Option([flag, param.name], type=param_type, default=default, show_default=True)


def command_for(fn: Callable[..., Any], name: str, invoke: Callable[..., Any]) -> click.Command:
    """A click command whose options are ``fn``'s parameters; running it calls ``invoke``."""
    try:
        hints = get_type_hints(fn)
    except Exception:
        hints = {}
    options: list[click.Parameter] = []
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise InvalidError(f"{name}: *args and **kwargs cannot become command-line flags")
        options.append(_option(param, hints.get(param.name, str)))
    # The docstring is printed by --help: as harmless as the rest of the CLI's output.
    help_text = harmless(fn.__doc__) if fn.__doc__ is not None else None
    return click.Command(name=name, params=options, callback=invoke, help=help_text)
