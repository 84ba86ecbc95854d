"""``rayfn secret``: store, list and delete the secrets functions name.

Values given as ``KEY=VALUE`` arguments are visible to other users of the machine while
the command runs (``ps``) and may land in the shell's history: ``--from-dotenv FILE`` is
the safer way. No command ever prints a value.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from rayfn.cli.output import say, show, table
from rayfn.exception import Error
from rayfn.protocol.operations import RegistryApi
from rayfn.protocol.secrets import INLINE_PREFIX

__all__ = ["secret_group"]

F = TypeVar("F", bound=Callable[..., Any])


def _errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Error as exc:  # names secrets and keys, never values
            raise click.ClickException(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def _pairs(pairs: tuple[str, ...]) -> dict[str, str]:
    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.UsageError(f"{key[:40]!r} is not KEY=VALUE")
        values[key] = value
    return values


def _when(t: float) -> str:
    return datetime.datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds")


@click.group(name="secret")
def secret_group() -> None:
    """Store, list and delete secrets (environment variables of a function's calls)."""


@secret_group.command(name="create")
@click.argument("name")
@click.argument("pairs", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--from-dotenv", "dotenv_file", type=click.Path(exists=True, dir_okay=False,
              path_type=Path), help="Read the variables from a .env file (safer than "
              "KEY=VALUE arguments, which other users can see in `ps`).")
@click.option("--force", is_flag=True, help="Replace the secret if it exists.")
@_errors
def secret_create(name: str, pairs: tuple[str, ...], dotenv_file: Path | None,
                  force: bool) -> None:
    """Store secret NAME with the variables given (KEY=VALUE arguments override the file's)."""
    from rayfn._client import get_client

    values: dict[str, str] = {}
    if dotenv_file is not None:
        from dotenv import dotenv_values

        values.update({k: v for k, v in dotenv_values(dotenv_file).items() if v is not None})
    values.update(_pairs(pairs))
    if not values:
        raise click.UsageError("give KEY=VALUE pairs or --from-dotenv FILE")
    get_client().call(RegistryApi.secret_create, name, values, force)
    say(f"stored secret {name!r} ({', '.join(sorted(values))})")


@secret_group.command(name="list")
@click.option("--all", "show_all", is_flag=True,
              help=f"Also the secrets deploys stored from values given inline "
                   f"({INLINE_PREFIX}...).")
@_errors
def secret_list(show_all: bool) -> None:
    """List stored secrets and their keys (never their values)."""
    from rayfn._client import get_client

    found = [s for s in get_client().call(RegistryApi.secret_list)
             if show_all or not s.name.startswith(INLINE_PREFIX)]
    show(table(("secret", "keys", "created", "updated"),
               ((s.name, ", ".join(s.keys), _when(s.created_at), _when(s.updated_at))
                for s in found)))


@secret_group.command(name="delete")
@click.argument("name")
@_errors
def secret_delete(name: str) -> None:
    """Delete secret NAME (functions that name it fail their next deploy)."""
    from rayfn._client import get_client

    get_client().call(RegistryApi.secret_delete, name)
    say(f"deleted secret {name!r}")
