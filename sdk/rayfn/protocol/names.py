"""Names of apps and functions: short, printable, safe in URLs, paths and logs."""

from __future__ import annotations

import re

from rayfn.exception import InvalidError

MAX_NAME_LENGTH = 64
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def validate_name(kind: str, name: object) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidError(f"{kind} name must be a non-empty string, not {name!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidError(
            f"{kind} name {name[:20]!r}... is {len(name)} characters; the limit is "
            f"{MAX_NAME_LENGTH}"
        )
    if not _NAME.fullmatch(name):
        raise InvalidError(
            f"{kind} name {name!r} may only contain letters, digits, '.', '-' and '_', "
            "and must start with a letter or digit"
        )
    return name


# The registry actor's name in its namespace (one registry per namespace).
REGISTRY_ACTOR = "rayfn-registry"
