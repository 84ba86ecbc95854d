"""``rayfn.Dict``: Modal's distributed dictionary, durable in the registry's store.

d = rayfn.Dict.from_name("my-dict", create_if_missing=True)
d["key"] = "value"; d.get("key"); d.put("key", 1, skip_if_exists=True)

Keys and values are pickled (cloudpickle) here; the registry stores the bytes and compares
keys as their pickled bytes, so two keys are the same key only if they pickle the same:
use plain values (str, int, tuples of them) as keys, as Modal advises. An entry neither
read nor written for ``dict_idle_seconds`` (7 days, as Modal's) is deleted.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from rayfn._aio import aio_function, aio_iter_method, aio_method
from rayfn._client import get_client
from rayfn._objects import ObjectHandle, dumps, loads
from rayfn._objects import delete as delete_object
from rayfn.protocol.objects import DICT, Kind, ObjectInfo
from rayfn.protocol.operations import RegistryApi

__all__ = ["Dict"]


class Dict(ObjectHandle):
    """A named dictionary that every process of the cluster (and REST client) shares."""

    _kind: ClassVar[Kind] = DICT

    @aio_function
    def delete(name: str, *, allow_missing: bool = False) -> None:  # noqa: N805 - static
        """Delete the Dict named ``name`` and all its entries."""
        delete_object(DICT, name, allow_missing)

    @aio_method
    def info(self) -> ObjectInfo:
        """Name, creation time and whether it is ephemeral."""
        return self._info()

    @aio_method
    def get(self, key: Any, default: Any = None) -> Any:
        """The value under ``key``, or ``default`` when there is none."""
        data = get_client().call(RegistryApi.dict_get, self._ready(), dumps(key, "the key"))
        return default if data is None else loads(data)

    @aio_method
    def contains(self, key: Any) -> bool:
        return get_client().call(RegistryApi.dict_contains, self._ready(),
                                 dumps(key, "the key"))

    @aio_method
    def len(self) -> int:
        """How many entries the Dict has."""
        return get_client().call(RegistryApi.dict_len, self._ready())

    @aio_method
    def put(self, key: Any, value: Any, *, skip_if_exists: bool = False) -> bool:
        """Set ``key`` to ``value``; with ``skip_if_exists`` a key already there keeps its
        value. True if the entry was written."""
        item = (dumps(key, "the key"), dumps(value, "the value"))
        return get_client().call(RegistryApi.dict_put, self._ready(), [item],
                                 skip_if_exists) > 0

    @aio_method
    def update(self, other: Mapping[Any, Any] | None = None, /, **kwargs: Any) -> None:
        """Set every entry of ``other`` and ``kwargs``, in one transaction per request."""
        entries = {**(other or {}), **kwargs}
        items = [(dumps(k, "a key"), dumps(v, "a value")) for k, v in entries.items()]
        name, limit, client = self._ready(), self._max_bytes(), get_client()
        batch: list[tuple[bytes, bytes]] = []
        size = 0
        for item in items:
            if batch and size + len(item[0]) + len(item[1]) > limit:
                client.call(RegistryApi.dict_put, name, batch, False)
                batch, size = [], 0
            batch.append(item)
            size += len(item[0]) + len(item[1])
        if batch:
            client.call(RegistryApi.dict_put, name, batch, False)

    @aio_method
    def pop(self, key: Any) -> Any:
        """Remove ``key`` and return its value; KeyError if there is none."""
        data = get_client().call(RegistryApi.dict_pop, self._ready(), dumps(key, "the key"))
        if data is None:
            raise KeyError(key)
        return loads(data)

    @aio_method
    def clear(self) -> None:
        """Remove every entry."""
        get_client().call(RegistryApi.dict_clear, self._ready())

    def __getitem__(self, key: Any) -> Any:
        data = get_client().call(RegistryApi.dict_get, self._ready(), dumps(key, "the key"))
        if data is None:
            raise KeyError(key)
        return loads(data)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.put(key, value)

    def __delitem__(self, key: Any) -> None:
        self.pop(key)

    def __contains__(self, key: Any) -> bool:
        return self.contains(key)

    def _entries(self) -> Iterator[tuple[bytes, bytes]]:
        name, client = self._ready(), get_client()
        after: bytes | None = None
        while page := client.call(RegistryApi.dict_entries, name, after):
            yield from page
            after = page[-1][0]

    @aio_iter_method
    def keys(self) -> Iterator[Any]:
        """The keys, a page per request, in the order of their pickled bytes."""
        return (loads(k) for k, _ in self._entries())

    @aio_iter_method
    def values(self) -> Iterator[Any]:
        return (loads(v) for _, v in self._entries())

    @aio_iter_method
    def items(self) -> Iterator[tuple[Any, Any]]:
        return ((loads(k), loads(v)) for k, v in self._entries())
