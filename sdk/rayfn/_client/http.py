"""The client for programs outside the cluster: the REST server, over HTTP.

The same operations as the Ray client; HTTP errors come back as the same rayfn exception
classes. Every request is safe to repeat (spawns carry client-made IDs), so connection
failures are retried while the server restarts.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import quote

import httpx

from rayfn import exception
from rayfn.network import InsecureTransportWarning, is_loopback
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
    QueueItemsRequest,
    QueueItemsResponse,
    QueuePutRequest,
    QueuePutResponse,
    ValueResponse,
)
from rayfn.object_schemas import ValuesResponse as QueueValuesResponse
from rayfn.protocol.ids import validate_call_id
from rayfn.protocol.names import validate_name
from rayfn.protocol.objects import (
    DEFAULT_PARTITION_TTL,
    DICT,
    QUEUE,
    ObjectInfo,
    validate_kind,
    validate_object_name,
)
from rayfn.protocol.operations import Operation, RegistryApi, operation_name
from rayfn.protocol.payload import CallOutcome
from rayfn.protocol.records import (
    CallQuery,
    DeployedFunction,
    DeployResult,
    OutputLine,
    OutputPage,
    ValuesPage,
)
from rayfn.protocol.retry import Transient, retry
from rayfn.protocol.secrets import SecretInfo, validate_secret_name, validate_secret_values
from rayfn.protocol.variants import validate_target
from rayfn.protocol.volumes import VolumeEntry, VolumeInfo
from rayfn.schemas import (
    AppInfo,
    AppList,
    AppOutputResponse,
    BatchSpawnResponse,
    CallList,
    CallLogs,
    CallRootResponse,
    CallStatus,
    ChildrenResponse,
    DeployFunction,
    DeployRequest,
    DeployResponse,
    FunctionInfo,
    FunctionStats,
    GeneratorSpawnRequest,
    GeneratorSpawnResponse,
    OutcomesRequest,
    OutcomesResponse,
    PickledCall,
    PickledSpawnRequest,
    StopResponse,
    ValuesResponse,
)
from rayfn.secret_schemas import SecretCreateRequest, SecretList
from rayfn.settings import Settings
from rayfn.volume_schemas import (
    VolumeCopyRequest,
    VolumeCreateRequest,
    VolumeInfoModel,
    VolumeListdirResponse,
    VolumeListResponse,
    VolumeReadRequest,
    VolumeReadResponse,
    VolumeRemoveRequest,
    VolumeWriteRequest,
)

# The server caps one wait; longer waits are several requests.
MAX_WAIT_SECONDS = 60.0
_REQUEST_SLACK_SECONDS = 30.0

P = ParamSpec("P")
R = TypeVar("R")
_Handler = Callable[Concatenate["HttpClient", P], R]
# Each registry operation the REST API offers, by the name of its declaration.
_HANDLERS: dict[str, Callable[..., Any]] = {}


def _handles(op: Operation[P, R]) -> Callable[[_Handler[P, R]], _Handler[P, R]]:
    """Register the method that does ``op`` over REST; mypy checks that it takes the
    operation's arguments and returns its type."""

    def register(handler: _Handler[P, R]) -> _Handler[P, R]:
        _HANDLERS[operation_name(op)] = handler
        return handler

    return register


def _error_from(response: httpx.Response) -> exception.Error:
    try:
        detail = response.json()["error"]
        kind, message = str(detail["type"]), str(detail["message"])
    except (ValueError, KeyError, TypeError):
        kind, message = "", response.text[:500]
    cls = getattr(exception, kind, None)
    if isinstance(cls, type) and issubclass(cls, exception.Error):
        return cls(message)
    if response.status_code == 401:
        return exception.AuthError(message)
    return exception.Error(f"HTTP {response.status_code} from the rayfn server: {message}")


def _no_parent(parent: str | None) -> None:
    """Only code running in a call has a parent to name, and it reaches the registry over
    Ray, never over HTTP."""
    if parent is not None:
        raise exception.InvalidError("spawns from inside a call go over Ray, not HTTP")


def _app(app: str, function: str | None = None) -> str:
    """The route of an app (or its function), from names checked first: a name is never
    allowed to make a path of its own (``a/b``, ``..``)."""
    path = f"/v1/apps/{quote(validate_name('app', app), safe='')}"
    if function is not None:
        path += f"/functions/{quote(validate_target(function), safe='')}"
    return path


def _secret(name: str) -> str:
    return f"/v1/secrets/{quote(validate_secret_name(name), safe='')}"


def _object_path(kind: str, name: str) -> str:
    kind = validate_kind(kind)
    return f"/v1/objects/{kind}/{quote(validate_object_name(kind, name), safe='')}"


def _call(call_id: str) -> str:
    return f"/v1/calls/{validate_call_id(call_id)}"


_RAYFN_DIR = str(Path(__file__).parents[1]) + os.sep
_warned_urls: set[str] = set()
_warned_lock = threading.Lock()


def warn_if_plaintext(url: str) -> bool:
    """Warn (once per URL and process) when the token would cross the network in clear.

    Loopback stays on this machine, so only ``http://`` to another host is worth a word;
    True if this call warned.
    """
    parsed = httpx.URL(url)
    if parsed.scheme != "http" or is_loopback(parsed.host):
        return False
    with _warned_lock:
        if url in _warned_urls:
            return False
        _warned_urls.add(url)
    warnings.warn(
        f"rayfn sends its token to {url} over plain http://, unencrypted: anyone on the "
        "network path can read it and control the service; use https:// (a TLS proxy in "
        "front of the REST server) or an SSH tunnel to 127.0.0.1",
        InsecureTransportWarning,
        stacklevel=_first_frame_outside_rayfn(),
    )
    return True


def _first_frame_outside_rayfn() -> int:
    """The ``stacklevel`` that points a warning at the user's line that connected."""
    frame = sys._getframe(1)  # warn_if_plaintext, the caller of warnings.warn: level 1
    level = 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_RAYFN_DIR):
        frame = frame.f_back
        level += 1
    return level


class HttpClient:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        token = settings.read_token()
        if not token:
            raise exception.AuthError(
                "no token for the rayfn server: set RAYFN_TOKEN or pass token= to connect()"
            )
        warn_if_plaintext(settings.server_url)
        self._http = httpx.Client(
            base_url=settings.server_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(MAX_WAIT_SECONDS + _REQUEST_SLACK_SECONDS, connect=10.0),
        )

    def close(self) -> None:
        self._http.close()

    def call(self, op: Operation[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        handler = _HANDLERS.get(operation_name(op))
        if handler is None:
            raise exception.InvalidError(
                f"{operation_name(op)} is not offered over REST: connect to the Ray "
                "cluster (unset RAYFN_SERVER_URL) to use it"
            )
        answer: R = handler(self, *args, **kwargs)
        return answer

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        def attempt() -> httpx.Response:
            response = self._http.request(method, path, **kwargs)
            if response.status_code == 503:  # the server is up, the registry restarting
                raise Transient(_error_from(response))
            if response.status_code >= 400:
                raise _error_from(response)
            return response

        return retry(attempt, budget=self.settings.client_retry_seconds,
                     transient=(httpx.TransportError,), give_up=self._gave_up)

    def _gave_up(self, error: BaseException) -> BaseException:
        if isinstance(error, httpx.TransportError):
            return exception.ConnectionError(
                f"cannot reach the rayfn server at {self.settings.server_url}: {error}")
        return error

    def _post(self, path: str, body: Any) -> httpx.Response:
        return self._request("POST", path, content=body.model_dump_json(),
                             headers={"Content-Type": "application/json"})

    # ---- apps --------------------------------------------------------------------

    @_handles(RegistryApi.deploy)
    def _deploy(
        self, app: str, functions: Sequence[DeployedFunction], ephemeral: bool = False
    ) -> DeployResult:
        body = DeployRequest(
            functions=[
                DeployFunction(name=f.name, options=json.loads(f.options), code=f.code,
                               runtime_env=json.loads(f.runtime_env))
                for f in functions
            ],
            ephemeral=ephemeral,
        )
        answer = DeployResponse.model_validate_json(self._post(_app(app), body).content)
        return DeployResult(answer.version, answer.web_urls)

    @_handles(RegistryApi.stop_app)
    def _stop_app(self, app: str) -> int:
        response = self._request("DELETE", _app(app))
        return StopResponse.model_validate_json(response.content).cancelled

    def _app_list(self) -> AppList:
        return AppList.model_validate_json(self._request("GET", "/v1/apps").content)

    @_handles(RegistryApi.list_apps)
    def _list_apps(self) -> list[AppInfo]:
        return [
            AppInfo(name=a.name, version=a.version, state="deployed", ephemeral=a.ephemeral,
                    updated_at=a.updated_at, functions=[f.name for f in a.functions],
                    schedules=[f.schedule for f in a.functions if f.schedule is not None])
            for a in self._app_list().apps
        ]

    @_handles(RegistryApi.function_info)
    def _function_info(self, app: str, name: str) -> FunctionInfo:
        response = self._request("GET", _app(app, name))
        return FunctionInfo.model_validate_json(response.content)

    @_handles(RegistryApi.stats)
    def _stats(self) -> list[FunctionStats]:
        return [
            FunctionStats(app=a.name, function=f.name, queued=f.queued, running=f.running,
                          retrying=f.retrying, in_ray=f.running, window=f.window,
                          nodes=f.nodes)
            for a in self._app_list().apps for f in a.functions
        ]

    # ---- calls -------------------------------------------------------------------

    @_handles(RegistryApi.spawn)
    def _spawn(
        self,
        app: str,
        name: str,
        calls: Sequence[tuple[str, bytes]],
        idempotency: tuple[str, str] | None = None,
        parent: str | None = None,
    ) -> list[str]:
        if idempotency is not None:
            raise exception.InvalidError("idempotency keys are for the JSON submit routes")
        _no_parent(parent)
        body = PickledSpawnRequest(calls=[PickledCall(call_id=c, args=a) for c, a in calls])
        response = self._post(f"{_app(app, name)}/calls/pickled", body)
        return BatchSpawnResponse.model_validate_json(response.content).call_ids

    def spawn_batches(
        self, app: str, name: str, batches: Iterable[Sequence[tuple[str, bytes]]],
        parent: str | None = None,
    ) -> None:
        for calls in batches:
            self._spawn(app, name, calls, None, parent)

    @_handles(RegistryApi.spawn_generator)
    def _spawn_generator(
        self, app: str, name: str, call_id: str, args: bytes, parent: str | None = None
    ) -> str:
        _no_parent(parent)
        body = GeneratorSpawnRequest(call_id=call_id, args=args)
        response = self._post(f"{_app(app, name)}/generator-calls/pickled", body)
        return GeneratorSpawnResponse.model_validate_json(response.content).call_id

    @_handles(RegistryApi.generator_values)
    def _generator_values(self, call_id: str, start: int, timeout: float) -> ValuesPage:
        response = self._request("GET", f"{_call(call_id)}/values",
                                 params={"start": start, "wait": min(timeout, MAX_WAIT_SECONDS)})
        page = ValuesResponse.model_validate_json(response.content)
        return ValuesPage(page.start, tuple(page.values), page.done)

    @_handles(RegistryApi.app_output)
    def _app_output(self, app: str, cursor: int, timeout: float) -> OutputPage:
        response = self._request("GET", f"{_app(app)}/output",
                                 params={"cursor": cursor, "wait": min(timeout, MAX_WAIT_SECONDS)})
        page = AppOutputResponse.model_validate_json(response.content)
        return OutputPage(tuple(OutputLine(line.function, line.call_id, line.text)
                                for line in page.lines), page.cursor)

    @_handles(RegistryApi.call_root)
    def _call_root(self, call_id: str) -> str:
        response = self._request("GET", f"{_call(call_id)}/root")
        return CallRootResponse.model_validate_json(response.content).call_id

    @_handles(RegistryApi.children)
    def _children(self, call_id: str) -> list[CallStatus]:
        response = self._request("GET", f"{_call(call_id)}/children")
        return ChildrenResponse.model_validate_json(response.content).calls

    def _outcomes(
        self, call_ids: Sequence[str], wait: float, include_pending: bool
    ) -> list[CallOutcome]:
        body = OutcomesRequest(call_ids=list(call_ids), wait=min(wait, MAX_WAIT_SECONDS),
                               include_pending=include_pending)
        response = self._post("/v1/calls/outcomes", body)
        return [o.to_outcome() for o in OutcomesResponse.model_validate_json(response.content)
                .outcomes]

    @_handles(RegistryApi.get)
    def _get(self, call_id: str, timeout: float | None) -> CallOutcome:
        wait = MAX_WAIT_SECONDS if timeout is None else timeout
        (outcome,) = self._outcomes([call_id], wait, include_pending=True)
        return outcome

    @_handles(RegistryApi.get_many)
    def _get_many(
        self, call_ids: Sequence[str], timeout: float, include_pending: bool = False
    ) -> list[CallOutcome]:
        return self._outcomes(call_ids, timeout, include_pending)

    @_handles(RegistryApi.status)
    def _status(self, call_id: str) -> CallStatus:
        response = self._request("GET", _call(call_id))
        return CallStatus.model_validate_json(response.content)

    @_handles(RegistryApi.cancel)
    def _cancel(self, call_id: str) -> CallStatus:
        response = self._request("POST", f"{_call(call_id)}/cancel")
        return CallStatus.model_validate_json(response.content)

    @_handles(RegistryApi.logs)
    def _logs(self, call_id: str) -> CallLogs:
        response = self._request("GET", f"{_call(call_id)}/logs")
        return CallLogs.model_validate_json(response.content)

    @_handles(RegistryApi.list_calls)
    def _list_calls(self, query: CallQuery) -> list[CallStatus]:
        params = {k: v for k, v in (("app", query.app), ("function", query.function),
                                    ("state", query.state.value if query.state else None),
                                    ("limit", query.limit), ("cursor", query.before))
                  if v is not None}
        response = self._request("GET", "/v1/calls", params=params)
        return CallList.model_validate_json(response.content).calls

    # ---- secrets (values are sent, never read back) -------------------------------

    @_handles(RegistryApi.secret_create)
    def _secret_create(self, name: str, values: dict[str, str], overwrite: bool = False
                       ) -> None:
        body = SecretCreateRequest(values=validate_secret_values(values), overwrite=overwrite)
        self._request("PUT", _secret(name), content=body.model_dump_json(),
                      headers={"content-type": "application/json"})

    @_handles(RegistryApi.secret_list)
    def _secret_list(self) -> list[SecretInfo]:
        found = SecretList.model_validate_json(self._request("GET", "/v1/secrets").content)
        return [SecretInfo(s.name, s.created_at, s.updated_at, tuple(s.keys))
                for s in found.secrets]

    @_handles(RegistryApi.secret_delete)
    def _secret_delete(self, name: str) -> None:
        self._request("DELETE", _secret(name))

    # ---- dicts and queues --------------------------------------------------------
    # (a name is checked before it makes a path, as an app's is)

    def _object(self, kind: str, name: str) -> str:
        kind = validate_kind(kind)
        return f"/v1/{kind}s/{quote(validate_object_name(kind, name), safe='')}"

    @_handles(RegistryApi.object_open)
    def _object_open(
        self, kind: str, name: str, create_if_missing: bool, ephemeral: bool = False
    ) -> ObjectInfo:
        path = _object_path(kind, name)
        body = OpenRequest(create_if_missing=create_if_missing, ephemeral=ephemeral)
        info = ObjectInfoResponse.model_validate_json(self._post(path, body).content)
        return ObjectInfo(info.kind, info.name, info.created_at, info.ephemeral)

    @_handles(RegistryApi.object_delete)
    def _object_delete(self, kind: str, name: str, allow_missing: bool = False) -> None:
        path = _object_path(kind, name)
        self._request("DELETE", path, params={"allow_missing": allow_missing})

    def _value(self, name: str, verb: str, key: bytes) -> bytes | None:
        response = self._post(f"{self._object(DICT, name)}/{verb}", KeyRequest(key=key))
        return ValueResponse.model_validate_json(response.content).value

    @_handles(RegistryApi.dict_get)
    def _dict_get(self, name: str, key: bytes) -> bytes | None:
        return self._value(name, "get", key)

    @_handles(RegistryApi.dict_pop)
    def _dict_pop(self, name: str, key: bytes) -> bytes | None:
        return self._value(name, "pop", key)

    @_handles(RegistryApi.dict_contains)
    def _dict_contains(self, name: str, key: bytes) -> bool:
        response = self._post(f"{self._object(DICT, name)}/contains", KeyRequest(key=key))
        return FoundResponse.model_validate_json(response.content).found

    @_handles(RegistryApi.dict_put)
    def _dict_put(
        self, name: str, items: Sequence[tuple[bytes, bytes]], skip_if_exists: bool = False
    ) -> int:
        body = DictPutRequest(items=[DictEntry(key=k, value=v) for k, v in items],
                              skip_if_exists=skip_if_exists)
        response = self._post(f"{self._object(DICT, name)}/put", body)
        return CountResponse.model_validate_json(response.content).count

    @_handles(RegistryApi.dict_len)
    def _dict_len(self, name: str) -> int:
        response = self._request("GET", f"{self._object(DICT, name)}/len")
        return CountResponse.model_validate_json(response.content).count

    @_handles(RegistryApi.dict_entries)
    def _dict_entries(self, name: str, after: bytes | None) -> list[tuple[bytes, bytes]]:
        response = self._post(f"{self._object(DICT, name)}/entries",
                              DictEntriesRequest(after=after))
        page = DictEntriesResponse.model_validate_json(response.content)
        return [(e.key, e.value) for e in page.entries]

    @_handles(RegistryApi.dict_clear)
    def _dict_clear(self, name: str) -> None:
        self._request("POST", f"{self._object(DICT, name)}/clear")

    @_handles(RegistryApi.queue_put)
    def _queue_put(
        self, name: str, partition: str | None, values: Sequence[bytes],
        partition_ttl: float = DEFAULT_PARTITION_TTL, timeout: float = 0.0,
    ) -> bool:
        body = QueuePutRequest(partition=partition, values=list(values),
                               partition_ttl=partition_ttl,
                               wait=min(timeout, MAX_WAIT_SECONDS))
        response = self._post(f"{self._object(QUEUE, name)}/put", body)
        return QueuePutResponse.model_validate_json(response.content).put

    @_handles(RegistryApi.queue_get)
    def _queue_get(
        self, name: str, partition: str | None, n_values: int, timeout: float = 0.0
    ) -> list[bytes]:
        body = QueueGetRequest(partition=partition, n_values=n_values,
                               wait=min(timeout, MAX_WAIT_SECONDS))
        response = self._post(f"{self._object(QUEUE, name)}/get", body)
        return QueueValuesResponse.model_validate_json(response.content).values

    @_handles(RegistryApi.queue_len)
    def _queue_len(self, name: str, partition: str | None, total: bool = False) -> int:
        params: dict[str, Any] = {"total": total}
        if partition is not None:
            params["partition"] = partition
        response = self._request("GET", f"{self._object(QUEUE, name)}/len", params=params)
        return CountResponse.model_validate_json(response.content).count

    @_handles(RegistryApi.queue_items)
    def _queue_items(
        self, name: str, partition: str | None, after: int, timeout: float = 0.0
    ) -> list[tuple[int, bytes]]:
        body = QueueItemsRequest(partition=partition, after=after,
                                 wait=min(timeout, MAX_WAIT_SECONDS))
        response = self._post(f"{self._object(QUEUE, name)}/items", body)
        page = QueueItemsResponse.model_validate_json(response.content)
        return [(item.position, item.value) for item in page.items]

    @_handles(RegistryApi.queue_clear)
    def _queue_clear(
        self, name: str, partition: str | None, all: bool = False  # noqa: A002
    ) -> None:
        body = QueueClearRequest(partition=partition, all=all)
        self._post(f"{self._object(QUEUE, name)}/clear", body)

    # ---- volumes -----------------------------------------------------------------

    @staticmethod
    def _volume(name: str) -> str:
        return f"/v1/volumes/{quote(validate_name('volume', name), safe='')}"

    @_handles(RegistryApi.volume_create)
    def _volume_create(self, name: str, exist_ok: bool = False) -> VolumeInfo:
        response = self._post(self._volume(name), VolumeCreateRequest(exist_ok=exist_ok))
        info = VolumeInfoModel.model_validate_json(response.content)
        return VolumeInfo(info.name, info.created_at)

    @_handles(RegistryApi.volume_list)
    def _volume_list(self) -> list[VolumeInfo]:
        answer = VolumeListResponse.model_validate_json(
            self._request("GET", "/v1/volumes").content)
        return [VolumeInfo(v.name, v.created_at) for v in answer.volumes]

    @_handles(RegistryApi.volume_delete)
    def _volume_delete(self, name: str) -> None:
        self._request("DELETE", self._volume(name))

    @_handles(RegistryApi.volume_listdir)
    def _volume_listdir(self, name: str, path: str, recursive: bool = False
                        ) -> list[VolumeEntry]:
        response = self._request("GET", f"{self._volume(name)}/files",
                                 params={"path": path, "recursive": recursive})
        answer = VolumeListdirResponse.model_validate_json(response.content)
        return [VolumeEntry(e.path, e.type, e.size, e.mtime) for e in answer.entries]

    @_handles(RegistryApi.volume_read)
    def _volume_read(self, name: str, path: str, offset: int, length: int) -> bytes:
        body = VolumeReadRequest(path=path, offset=offset, length=length)
        response = self._post(f"{self._volume(name)}/read", body)
        return VolumeReadResponse.model_validate_json(response.content).data

    @_handles(RegistryApi.volume_write)
    def _volume_write(self, name: str, path: str, upload: str, offset: int, data: bytes,
                      final: bool) -> None:
        body = VolumeWriteRequest(path=path, upload=upload, offset=offset, data=data,
                                  final=final)
        self._post(f"{self._volume(name)}/write", body)

    @_handles(RegistryApi.volume_remove)
    def _volume_remove(self, name: str, path: str, recursive: bool = False) -> None:
        self._post(f"{self._volume(name)}/remove",
                   VolumeRemoveRequest(path=path, recursive=recursive))

    @_handles(RegistryApi.volume_copy)
    def _volume_copy(self, name: str, sources: Sequence[str], dest: str) -> None:
        self._post(f"{self._volume(name)}/copy",
                   VolumeCopyRequest(sources=list(sources), dest=dest))
