"""REST routes of Dicts and Queues (``rayfn.Dict``, ``rayfn.Queue``), under ``/v1``.

Keys and values are base64 of pickles: the SDK's HTTP client makes and reads them; the
server passes the bytes on and never unpickles them. Waits of queue gets and puts count
against the server's bound on waiters, as waits for calls do.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response

from rayfn.object_schemas import (
    CountResponse,
    DictEntriesRequest,
    DictEntriesResponse,
    DictEntry,
    DictPutRequest,
    FoundResponse,
    KeyRequest,
    ObjectInfoResponse,
    OpenRequest,
    QueueClearRequest,
    QueueGetRequest,
    QueueItem,
    QueueItemsRequest,
    QueueItemsResponse,
    QueuePutRequest,
    QueuePutResponse,
    ValueResponse,
    ValuesResponse,
)
from rayfn.protocol.objects import DICT, QUEUE, validate_object_name
from rayfn.protocol.operations import RegistryApi
from rayfn_service.api.routes import STORE_REFUSED, _errors, registry

router = APIRouter(prefix="/v1")

Kind = Annotated[Literal["dict", "queue"], Path(description="`dict` or `queue`")]
Name = Annotated[str, Path(description="The Dict's or Queue's name", max_length=100)]


@router.post("/objects/{kind}/{name}", response_model=ObjectInfoResponse,
             responses=_errors(404, STORE_REFUSED),
             summary="Look up a Dict or Queue; make it first with `create_if_missing`")
async def open_object(request: Request, kind: Kind, name: Name, body: OpenRequest
                      ) -> ObjectInfoResponse:
    info = await registry(request).call(RegistryApi.object_open, kind,
                                        validate_object_name(kind, name),
                                        body.create_if_missing, body.ephemeral)
    return ObjectInfoResponse(kind=info.kind, name=info.name, created_at=info.created_at,
                              ephemeral=info.ephemeral)


@router.delete("/objects/{kind}/{name}", status_code=204, responses=_errors(404),
               summary="Delete a Dict or Queue and all it holds")
async def delete_object(request: Request, kind: Kind, name: Name,
                        allow_missing: bool = False) -> Response:
    await registry(request).call(RegistryApi.object_delete, kind,
                                 validate_object_name(kind, name), allow_missing)
    return Response(status_code=204)


# ---- dicts -----------------------------------------------------------------------


def _dict(name: str) -> str:
    return validate_object_name(DICT, name)


@router.post("/dicts/{name}/get", response_model=ValueResponse, responses=_errors(404),
             summary="The value under a key (null: none)")
async def dict_get(request: Request, name: Name, body: KeyRequest) -> ValueResponse:
    value = await registry(request).call(RegistryApi.dict_get, _dict(name), body.key)
    return ValueResponse(value=value)


@router.post("/dicts/{name}/contains", response_model=FoundResponse, responses=_errors(404),
             summary="Whether the Dict has the key")
async def dict_contains(request: Request, name: Name, body: KeyRequest) -> FoundResponse:
    found = await registry(request).call(RegistryApi.dict_contains, _dict(name), body.key)
    return FoundResponse(found=found)


@router.post("/dicts/{name}/put", response_model=CountResponse,
             responses=_errors(404, STORE_REFUSED),
             summary="Set entries in one transaction; returns how many were written")
async def dict_put(request: Request, name: Name, body: DictPutRequest) -> CountResponse:
    count = await registry(request).call(RegistryApi.dict_put, _dict(name),
                                         [(e.key, e.value) for e in body.items],
                                         body.skip_if_exists)
    return CountResponse(count=count)


@router.post("/dicts/{name}/pop", response_model=ValueResponse,
             responses=_errors(404, STORE_REFUSED),
             summary="Remove an entry and return its value (null: there was none)")
async def dict_pop(request: Request, name: Name, body: KeyRequest) -> ValueResponse:
    value = await registry(request).call(RegistryApi.dict_pop, _dict(name), body.key)
    return ValueResponse(value=value)


@router.get("/dicts/{name}/len", response_model=CountResponse, responses=_errors(404),
            summary="How many entries the Dict has")
async def dict_len(request: Request, name: Name) -> CountResponse:
    return CountResponse(count=await registry(request).call(RegistryApi.dict_len, _dict(name)))


@router.post("/dicts/{name}/entries", response_model=DictEntriesResponse,
             responses=_errors(404),
             summary="A page of entries in key order after `after`; empty at the end")
async def dict_entries(request: Request, name: Name, body: DictEntriesRequest
                       ) -> DictEntriesResponse:
    page = await registry(request).call(RegistryApi.dict_entries, _dict(name), body.after)
    return DictEntriesResponse(entries=[DictEntry(key=k, value=v) for k, v in page])


@router.post("/dicts/{name}/clear", status_code=204, responses=_errors(404, STORE_REFUSED),
             summary="Remove every entry")
async def dict_clear(request: Request, name: Name) -> Response:
    await registry(request).call(RegistryApi.dict_clear, _dict(name))
    return Response(status_code=204)


# ---- queues ----------------------------------------------------------------------


def _queue(name: str) -> str:
    return validate_object_name(QUEUE, name)


@router.post("/queues/{name}/put", response_model=QueuePutResponse,
             responses=_errors(404, STORE_REFUSED),
             summary="Append values to a partition, waiting up to `wait` while it is full")
async def queue_put(request: Request, name: Name, body: QueuePutRequest) -> QueuePutResponse:
    gateway, queue = registry(request), _queue(name)

    async def ask(wait: float) -> bool:
        return await gateway.call(RegistryApi.queue_put, queue, body.partition, body.values,
                                  body.partition_ttl, wait)

    return QueuePutResponse(put=await gateway.wait_for(body.wait, ask))


@router.post("/queues/{name}/get", response_model=ValuesResponse,
             responses=_errors(404, STORE_REFUSED),
             summary="Remove and return up to `n_values` of the oldest values, waiting up "
             "to `wait` for one")
async def queue_get(request: Request, name: Name, body: QueueGetRequest) -> ValuesResponse:
    gateway, queue = registry(request), _queue(name)

    async def ask(wait: float) -> list[bytes]:
        return await gateway.call(RegistryApi.queue_get, queue, body.partition, body.n_values,
                                  wait)

    return ValuesResponse(values=await gateway.wait_for(body.wait, ask))


@router.get("/queues/{name}/len", response_model=CountResponse, responses=_errors(404),
            summary="Values in a partition, or with `total` in every partition")
async def queue_len(
    request: Request, name: Name,
    partition: Annotated[str | None, Query(max_length=64)] = None, total: bool = False,
) -> CountResponse:
    count = await registry(request).call(RegistryApi.queue_len, _queue(name), partition, total)
    return CountResponse(count=count)


@router.post("/queues/{name}/items", response_model=QueueItemsResponse,
             responses=_errors(404),
             summary="Values after position `after`, left in place, waiting up to `wait` "
             "for one")
async def queue_items(request: Request, name: Name, body: QueueItemsRequest
                      ) -> QueueItemsResponse:
    gateway, queue = registry(request), _queue(name)

    async def ask(wait: float) -> list[tuple[int, bytes]]:
        return await gateway.call(RegistryApi.queue_items, queue, body.partition, body.after,
                                  wait)

    page = await gateway.wait_for(body.wait, ask)
    return QueueItemsResponse(items=[QueueItem(position=p, value=v) for p, v in page])


@router.post("/queues/{name}/clear", status_code=204, responses=_errors(404, STORE_REFUSED),
             summary="Remove every value of a partition, or with `all` of every partition")
async def queue_clear(request: Request, name: Name, body: QueueClearRequest) -> Response:
    await registry(request).call(RegistryApi.queue_clear, _queue(name), body.partition,
                                 body.all)
    return Response(status_code=204)
