"""Secret: environment variables stored by the service and set in a call's process only.

A named secret (``from_name``) is stored with ``rayfn secret create``. Secrets given by
value (``from_dict``, ``from_dotenv``, ``from_local_environ``) are stored at deploy under
a name made from a hash of their content (``inline-...``), so only names ever travel in a
function's options and runtime env; the values reach the registry once, by ``secret_create``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from rayfn.exception import InvalidError, NotFoundError
from rayfn.protocol.names import validate_name
from rayfn.protocol.operations import RegistryApi
from rayfn.protocol.secrets import inline_secret_name, validate_secret_values

__all__ = ["Secret"]


class Secret:
    """Named (``from_name``: stored by the service) or given here (``from_dict``)."""

    def __init__(self, name: str | None = None, values: Mapping[str, str] | None = None) -> None:
        if (name is None) == (values is None):
            raise InvalidError("a Secret has a name or values")
        self.name = None if name is None else validate_name("secret", name)
        self._values = None if values is None else validate_secret_values(dict(values))
        self._stored_with: object = None  # the client the inline values were stored with

    def __repr__(self) -> str:  # never the values
        if self.name:
            return f"Secret.from_name({self.name!r})"
        return f"Secret.from_dict(<{len(self._values or {})} keys>)"

    @classmethod
    def from_name(cls, name: str, *, environment_name: str | None = None,
                  required_keys: list[str] | None = None) -> Secret:
        return cls(name=name)

    @classmethod
    def from_dict(cls, env_dict: Mapping[str, str | None] | None = None) -> Secret:
        """Values given here (None values are left out, as Modal does)."""
        return cls(values={k: v for k, v in (env_dict or {}).items() if v is not None})

    @classmethod
    def from_local_environ(cls, env_keys: list[str]) -> Secret:
        """These variables of the deploying process's environment."""
        missing = [k for k in env_keys if k not in os.environ]
        if missing:
            raise InvalidError(f"not set in the local environment: {', '.join(missing)}")
        return cls(values={k: os.environ[k] for k in env_keys})

    @classmethod
    def from_dotenv(cls, path: str | Path | None = None, *, filename: str = ".env") -> Secret:
        """The variables of a ``.env`` file: ``filename`` in the directory ``path`` (a
        file's path is taken as its directory's), else in the current directory."""
        from dotenv import dotenv_values  # only deploys that use a .env file need it

        base = Path.cwd() if path is None else Path(path)
        if base.is_file():
            base = base.parent
        file = base / filename
        if not file.is_file():
            raise NotFoundError(f"no {filename} file in {base}")
        return cls(values={k: v for k, v in dotenv_values(file).items() if v is not None})

    def stored_name(self) -> str:
        """The name the service stores this secret under; an inline one is stored first."""
        if self.name is not None:
            return self.name
        from rayfn._client import get_client  # deploy time only

        assert self._values is not None
        name = inline_secret_name(self._values)
        client = get_client()
        if self._stored_with is not client:
            client.call(RegistryApi.secret_create, name, self._values, True)
            self._stored_with = client
        return name


def secret_names(secrets: Iterable[Secret]) -> list[str]:
    """The names the service stores ``secrets`` under (secrets given by value are stored
    at deploy under a name made from their values)."""
    return [secret.stored_name() for secret in secrets]
