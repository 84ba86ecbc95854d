"""Secret: environment variables stored by the service and set in a call's process only."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from rayfn.exception import InvalidError
from rayfn.protocol.names import validate_name

__all__ = ["Secret"]


class Secret:
    """Named (``from_name``: stored by the service) or given here (``from_dict``)."""

    def __init__(self, name: str | None = None, values: Mapping[str, str] | None = None) -> None:
        if (name is None) == (values is None):
            raise InvalidError("a Secret has a name or values")
        self.name = None if name is None else validate_name("secret", name)
        self._values = None if values is None else dict(values)

    def __repr__(self) -> str:  # never the values
        return f"Secret.from_name({self.name!r})" if self.name else "Secret.from_dict(...)"

    @classmethod
    def from_name(cls, name: str, *, environment_name: str | None = None,
                  required_keys: list[str] | None = None) -> Secret:
        return cls(name=name)

    @classmethod
    def from_dict(cls, env_dict: Mapping[str, str | None] | None = None) -> Secret:
        return cls(values={k: v for k, v in (env_dict or {}).items() if v is not None})


def secret_names(secrets: Iterable[Secret]) -> list[str]:
    """The names the service stores ``secrets`` under (secrets given by value are stored
    at deploy under a name made from their values)."""
    names = []
    for secret in secrets:
        if secret.name is None:
            raise InvalidError("Secret.from_dict is not deployable yet")
        names.append(secret.name)
    return names
