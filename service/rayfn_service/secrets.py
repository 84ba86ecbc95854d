"""Secrets in the registry: checks, writes through the group commit, and the values a
call's process asks for.

Values leave the registry only through ``values`` (over Ray, to a call's process; never
served over REST). Everything else, errors and logs included, names secrets and keys only.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from rayfn.exception import ConflictError, InvalidError, NotFoundError
from rayfn.protocol.secrets import SecretInfo, validate_secret_name, validate_secret_values
from rayfn_service.store import Store
from rayfn_service.store.group_commit import GroupCommit

__all__ = ["Secrets", "check_deployable"]


def _names(names: object) -> list[str]:
    if not isinstance(names, (list, tuple)):
        raise InvalidError(f"secret names are a list, not {type(names).__name__}")
    return [validate_secret_name(n) for n in names]


def check_deployable(store: Store, wanted: Sequence[tuple[str, Sequence[str]]]) -> None:
    """NotFoundError naming the first missing secret and the function that wants it
    (``wanted``: each function's name and its secrets' names); run inside the deploy's
    write so no secret can be deleted between the check and the deploy."""
    for function, names in wanted:
        for name in store.missing_secrets(list(names)):
            raise NotFoundError(f"secret {name!r} (used by function {function!r}) not found; "
                                f"create it with `rayfn secret create {name} KEY=VALUE`")


class Secrets:
    def __init__(self, store: Store, commit: GroupCommit) -> None:
        self._store = store
        self._commit = commit

    async def create(self, name: str, values: dict[str, str], overwrite: bool) -> None:
        name = validate_secret_name(name)
        checked = validate_secret_values(values)
        if not isinstance(overwrite, bool):
            raise InvalidError(f"overwrite must be True or False, not {overwrite!r}")
        written = await self._commit.run(lambda: self._store.put_secret(
            name, checked, overwrite=overwrite, now=time.time()))
        if not written:
            raise ConflictError(f"secret {name!r} already exists (overwrite to replace it)")

    def listing(self) -> list[SecretInfo]:
        return self._store.list_secrets()

    async def delete(self, name: str) -> None:
        name = validate_secret_name(name)
        if not await self._commit.run(lambda: self._store.delete_secret(name)):
            raise NotFoundError(f"secret {name!r} not found")

    def values(self, names: list[str]) -> dict[str, str]:
        """The named secrets' variables merged in order (a later one wins a key)."""
        merged: dict[str, str] = {}
        for name in _names(names):
            found = self._store.secret_values(name)
            if found is None:
                raise NotFoundError(f"secret {name!r} not found")
            merged.update(found)
        return merged
