"""What the SDK and the registry agree on about Dicts and Queues: the kinds, names,
limits, and the checks both sides make (the SDK to fail early, the registry because
it trusts no client).

Keys and values cross as pickled bytes: the registry stores and compares bytes only and
never unpickles anything, so two keys are the same key when they pickle the same.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from typing import Literal

from rayfn.exception import InvalidError
from rayfn.protocol.names import validate_name

__all__ = [
    "DEFAULT_PARTITION_TTL",
    "DICT",
    "MAX_DICT_PAGE",
    "MAX_KEY_BYTES",
    "MAX_PARTITIONS",
    "MAX_PARTITION_ITEMS",
    "MAX_PARTITION_KEY_BYTES",
    "MAX_QUEUE_PAGE",
    "QUEUE",
    "Kind",
    "ObjectInfo",
    "ephemeral_name",
    "validate_kind",
    "validate_object_name",
    "validate_partition",
]

Kind = Literal["dict", "queue"]
DICT: Kind = "dict"
QUEUE: Kind = "queue"

# Modal's limits: a partition key of at most 64 bytes, at most 5,000 items a partition
# and 100,000 partitions a queue; a partition lasts a day after its last put by default.
MAX_PARTITION_KEY_BYTES = 64
MAX_PARTITION_ITEMS = 5_000
MAX_PARTITIONS = 100_000
DEFAULT_PARTITION_TTL = 24 * 3600.0
# A pickled Dict key: kept small because every lookup compares it (Modal names none).
MAX_KEY_BYTES = 64 * 1024
# Entries (or queue items) per page of keys()/items()/iterate(); pages also stop at
# max_input_bytes of values past the first.
MAX_DICT_PAGE = 1000
MAX_QUEUE_PAGE = 1000

# An ephemeral object's name: a prefix no user's name can have (names start with a
# letter or digit), then random hex, so it can never be taken by from_name.
_EPHEMERAL_PREFIX = "~ephemeral-"
_EPHEMERAL = re.compile(r"~ephemeral-[0-9a-f]{32}")


@dataclasses.dataclass(frozen=True, slots=True)
class ObjectInfo:
    """A Dict or Queue as the registry keeps it."""

    kind: str
    name: str
    created_at: float
    ephemeral: bool


def ephemeral_name() -> str:
    return _EPHEMERAL_PREFIX + secrets.token_hex(16)


def validate_kind(kind: object) -> Kind:
    if kind == DICT:
        return DICT
    if kind == QUEUE:
        return QUEUE
    raise InvalidError(f"kind must be 'dict' or 'queue', not {kind!r}")


def validate_object_name(kind: str, name: object) -> str:
    """A user's name (as for apps), or a name ``ephemeral()`` made."""
    if isinstance(name, str) and _EPHEMERAL.fullmatch(name):
        return name
    return validate_name(kind, name)


def validate_partition(partition: object) -> str:
    """A partition key: None is the default partition (stored as ``""``); others are
    non-empty strings of at most 64 bytes (UTF-8), as Modal's."""
    if partition is None:
        return ""
    if not isinstance(partition, str) or not partition:
        raise InvalidError(f"partition must be a non-empty string or None, not {partition!r}")
    size = len(partition.encode("utf-8", "surrogatepass"))
    if size > MAX_PARTITION_KEY_BYTES:
        raise InvalidError(f"partition key {partition[:20]!r}... is {size} bytes; the limit "
                           f"is {MAX_PARTITION_KEY_BYTES}")
    return partition
