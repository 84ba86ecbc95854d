"""REST bodies of Dicts and Queues: the server's request/response models and the HTTP
client's. Keys and values are base64 of the pickles the SDK made."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from rayfn.protocol.objects import DEFAULT_PARTITION_TTL, MAX_PARTITION_ITEMS
from rayfn.schemas import Base64Bytes

__all__ = [
    "CountResponse",
    "DictEntriesRequest",
    "DictEntriesResponse",
    "DictEntry",
    "DictPutRequest",
    "FoundResponse",
    "KeyRequest",
    "ObjectInfoResponse",
    "OpenRequest",
    "QueueClearRequest",
    "QueueGetRequest",
    "QueueItem",
    "QueueItemsRequest",
    "QueueItemsResponse",
    "QueuePutRequest",
    "QueuePutResponse",
    "ValueResponse",
    "ValuesResponse",
]

_MAX_WAIT = 60.0


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OpenRequest(_Request):
    create_if_missing: bool = False
    ephemeral: bool = False


class ObjectInfoResponse(BaseModel):
    kind: str
    name: str
    created_at: float
    ephemeral: bool


class KeyRequest(_Request):
    key: Base64Bytes


class ValueResponse(BaseModel):
    value: Base64Bytes | None
    """None: no entry had the key."""


class FoundResponse(BaseModel):
    found: bool


class CountResponse(BaseModel):
    count: int


class DictEntry(BaseModel):
    key: Base64Bytes
    value: Base64Bytes


class DictPutRequest(_Request):
    items: list[DictEntry] = Field(max_length=100_000)
    skip_if_exists: bool = False


class DictEntriesRequest(_Request):
    after: Base64Bytes | None = None
    """The last key of the previous page; None for the first page."""


class DictEntriesResponse(BaseModel):
    entries: list[DictEntry]


class QueuePutRequest(_Request):
    partition: str | None = None
    values: list[Base64Bytes] = Field(max_length=MAX_PARTITION_ITEMS)
    partition_ttl: float = DEFAULT_PARTITION_TTL
    wait: float = Field(default=0.0, ge=0, le=_MAX_WAIT)
    """Seconds to wait while the partition is full."""


class QueuePutResponse(BaseModel):
    put: bool
    """False: the partition stayed full for all of ``wait``; nothing was put."""


class QueueGetRequest(_Request):
    partition: str | None = None
    n_values: int = Field(default=1, ge=1)
    wait: float = Field(default=0.0, ge=0, le=_MAX_WAIT)
    """Seconds to wait for a value while the partition is empty."""


class ValuesResponse(BaseModel):
    values: list[Base64Bytes]


class QueueItemsRequest(_Request):
    partition: str | None = None
    after: int = Field(default=-1, ge=-1)
    wait: float = Field(default=0.0, ge=0, le=_MAX_WAIT)


class QueueItem(BaseModel):
    position: int
    value: Base64Bytes


class QueueItemsResponse(BaseModel):
    items: list[QueueItem]


class QueueClearRequest(_Request):
    partition: str | None = None
    all: bool = False
