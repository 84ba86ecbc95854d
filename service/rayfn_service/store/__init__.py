"""Durable state: deployments, calls, results and expiry tombstones.

Code outside this package opens a store with ``open_store`` and a reader with
``open_reader`` and uses them through ``Store`` and ``Reader``: which backend a location
names is decided here alone.
"""

from __future__ import annotations

import re
from pathlib import Path

from rayfn.exception import InvalidError
from rayfn_service.store.base import (
    AppRecord,
    CallRecord,
    Claim,
    FunctionRecord,
    NewCall,
    Reader,
    ScheduleRecord,
    Store,
)
from rayfn_service.store.reader import StoreReader
from rayfn_service.store.sqlite import SqliteStore

__all__ = [
    "AppRecord",
    "CallRecord",
    "Claim",
    "FunctionRecord",
    "NewCall",
    "Reader",
    "ScheduleRecord",
    "SqliteStore",
    "Store",
    "StoreReader",
    "open_reader",
    "open_store",
]

_URL_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


def open_store(location: str | Path) -> Store:
    """The store at ``location``: a file path is a SQLite store (made if missing).

    StoreError if it cannot be opened; InvalidError for a URL of an unknown scheme."""
    return SqliteStore(_sqlite_path(location))


def open_reader(location: str | Path) -> Reader:
    """A read-only reader of the store at ``location`` (as for ``open_store``); StoreError
    if it cannot be opened (a SQLite file must exist)."""
    return StoreReader(_sqlite_path(location))


def _sqlite_path(location: str | Path) -> Path:
    if isinstance(location, Path):
        return location
    if match := _URL_SCHEME.match(location):
        # Only the scheme is named: the rest of a URL may hold a password.
        raise InvalidError(
            f"unknown store URL scheme {match[1]!r}: a store is a path to a SQLite file"
        )
    return Path(location)
