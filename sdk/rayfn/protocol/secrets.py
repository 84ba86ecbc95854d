"""What the SDK and the registry agree on about Secrets: what a secret's listing shows
(key names, never values), the limits, and the checks both sides make (the SDK to fail
early, the registry because it trusts no client).

Error messages name keys and sizes, never a value.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping

from rayfn.exception import InvalidError
from rayfn.protocol.names import validate_name

__all__ = [
    "INLINE_PREFIX",
    "MAX_SECRET_BYTES",
    "MAX_SECRET_KEYS",
    "SecretInfo",
    "inline_secret_name",
    "validate_secret_name",
    "validate_secret_values",
]

# A secret's values together (keys and values in UTF-8) and how many keys it may have.
MAX_SECRET_BYTES = 64 * 1024
MAX_SECRET_KEYS = 1000
# Secrets given by value (from_dict, from_dotenv, from_local_environ) are stored at
# deploy under a name made from their content, so equal values share one stored secret.
INLINE_PREFIX = "inline-"
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclasses.dataclass(frozen=True, slots=True)
class SecretInfo:
    """A stored secret as listings show it: its keys' names, never their values."""

    name: str
    created_at: float
    updated_at: float
    keys: tuple[str, ...]


def validate_secret_name(name: object) -> str:
    return validate_name("secret", name)


def validate_secret_values(values: object) -> dict[str, str]:
    """The values as a fresh dict; InvalidError (naming keys, never values) otherwise."""
    if not isinstance(values, Mapping):
        raise InvalidError(f"a secret's values are a dict of str, not {type(values).__name__}")
    if not values:
        raise InvalidError("a secret needs at least one key")
    if len(values) > MAX_SECRET_KEYS:
        raise InvalidError(f"a secret has {len(values)} keys; the limit is {MAX_SECRET_KEYS}")
    checked: dict[str, str] = {}
    size = 0
    for key, value in values.items():
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            shown = key[:40] if isinstance(key, str) else type(key).__name__
            raise InvalidError(f"secret key {shown!r} is not an environment variable name "
                               "(letters, digits and '_', not starting with a digit)")
        if not isinstance(value, str):
            raise InvalidError(f"the value of secret key {key!r} must be a str, not "
                               f"{type(value).__name__}")
        if "\0" in value:
            raise InvalidError(f"the value of secret key {key!r} contains a NUL character")
        size += len(key.encode()) + len(value.encode())
        checked[key] = value
    if size > MAX_SECRET_BYTES:
        raise InvalidError(f"a secret's keys and values are {size} bytes; the limit is "
                           f"{MAX_SECRET_BYTES}")
    return checked


def inline_secret_name(values: Mapping[str, str]) -> str:
    """The name secret values given inline are stored under: a hash of their content."""
    canonical = json.dumps(dict(values), sort_keys=True, separators=(",", ":"))
    return INLINE_PREFIX + hashlib.sha256(canonical.encode()).hexdigest()[:20]
