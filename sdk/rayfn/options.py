"""Function options, validated once at decoration into frozen objects."""

from __future__ import annotations

import dataclasses
import posixpath
import re
from collections.abc import Iterable, Mapping
from typing import Any

from rayfn.exception import InvalidError
from rayfn.protocol.names import validate_name

__all__ = ["ClassSpec", "FunctionOptions", "ParameterSpec", "Retries", "WebEndpoint"]

MIN_TIMEOUT = 1.0
MAX_TIMEOUT = 24 * 3600.0
MAX_RETRIES = 100
# Upper bounds of the resource options: far beyond any real cluster, small enough that
# every product the registry makes of them (bytes, autoscaler bundles) stays exact.
MAX_CONTAINERS = 10_000
MAX_CPU = 1024.0
MAX_GPU = 256.0
MAX_MEMORY_MIB = 16 * 1024 * 1024  # 16 TiB
# What a web endpoint function is (Modal's decorators): returns an ASGI app
# (@asgi_app), is the handler of one route (@fastapi_endpoint), returns a WSGI app
# (@wsgi_app), or starts a server on a port (@web_server).
WEB_ENDPOINT_KINDS = ("asgi", "fastapi", "wsgi", "web_server")
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
MAX_STARTUP_TIMEOUT = 3600.0
# Modal's bounds for @concurrent and @batched, and for scaledown_window (seconds).
MAX_INPUTS = 1000
MAX_BATCH_SIZE = 1000
MAX_BATCH_WAIT_MS = 10 * 60 * 1000
MIN_SCALEDOWN_WINDOW = 1.0
MAX_SCALEDOWN_WINDOW = 24 * 3600.0
# The types a class parameter may have (Modal's), by the name they are stored under.
PARAMETER_TYPES: dict[str, type] = {"int": int, "str": str, "bool": bool, "bytes": bytes}
# A label is one URL path segment (Modal uses it as a DNS label: the same characters).
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidError(f"{name} must be a number, not {value!r}")
    return float(value)


def _check_range(name: str, value: object, low: float, high: float) -> float:
    number = _number(name, value)
    if not low <= number <= high:
        raise InvalidError(f"{name} must be between {low:g} and {high:g}, not {value!r}")
    return number


@dataclasses.dataclass(frozen=True)
class Retries:
    """How often and how soon a failed or timed-out call is tried again.

    The delay before retry ``n`` (1-based) is
    ``min(initial_delay * backoff_coefficient ** (n - 1), max_delay)``.
    """

    max_retries: int
    backoff_coefficient: float = 2.0
    initial_delay: float = 1.0
    max_delay: float = 60.0

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise InvalidError(f"max_retries must be an integer, not {self.max_retries!r}")
        if not 0 <= self.max_retries <= MAX_RETRIES:
            raise InvalidError(f"max_retries must be between 0 and {MAX_RETRIES}")
        _check_range("backoff_coefficient", self.backoff_coefficient, 1.0, 10.0)
        _check_range("initial_delay", self.initial_delay, 0.0, 60.0)
        _check_range("max_delay", self.max_delay, 1.0, 60.0)

    def delay(self, retry_number: int) -> float:
        """Seconds to wait before retry ``retry_number`` (1 for the first retry)."""
        raw = self.initial_delay * self.backoff_coefficient ** max(retry_number - 1, 0)
        return float(min(raw, self.max_delay))

    @classmethod
    def fixed(cls, max_retries: int) -> Retries:
        """``retries=N``: N retries one second apart."""
        return cls(max_retries=max_retries, backoff_coefficient=1.0, initial_delay=1.0)


@dataclasses.dataclass(frozen=True)
class WebEndpoint:
    """Marks a function as a web endpoint, served over HTTP.

    ``kind`` is what the function is (see ``WEB_ENDPOINT_KINDS``); ``label`` names its URL
    path instead of the function's name. ``method`` and ``docs`` are a ``fastapi``
    endpoint's route method and whether it serves ``/docs``; ``port`` and
    ``startup_timeout`` are where a ``web_server`` function's server listens and how long
    it may take to accept connections.
    """

    kind: str = "asgi"
    label: str | None = None
    method: str = "GET"
    docs: bool = False
    port: int | None = None
    startup_timeout: float = 5.0
    requires_auth: bool = False  # Modal's requires_proxy_auth: rayfn's token is asked for

    def __post_init__(self) -> None:
        if self.kind not in WEB_ENDPOINT_KINDS:
            raise InvalidError(f"unknown web endpoint kind {self.kind!r}")
        if self.label is not None and (
            not isinstance(self.label, str) or not _LABEL.fullmatch(self.label)
        ):
            raise InvalidError(
                f"label must be 1-63 lowercase letters, digits and dashes, not {self.label!r}"
            )
        if self.method not in HTTP_METHODS:
            raise InvalidError(f"method must be one of {', '.join(HTTP_METHODS)}, "
                               f"not {self.method!r}")
        if not isinstance(self.docs, bool):
            raise InvalidError(f"docs must be True or False, not {self.docs!r}")
        if self.kind == "web_server":
            if isinstance(self.port, bool) or not isinstance(self.port, int) \
                    or not 1 <= self.port <= 65535:
                raise InvalidError(f"port must be a port number (1-65535), not {self.port!r}")
            _check_range("startup_timeout", self.startup_timeout, 0.0, MAX_STARTUP_TIMEOUT)
            if self.startup_timeout <= 0:
                raise InvalidError("startup_timeout must be more than 0 seconds")
        elif self.port is not None:
            raise InvalidError("port is for @rayfn.web_server()")


@dataclasses.dataclass(frozen=True)
class ParameterSpec:
    """One ``modal.parameter()`` of a class: its name, type and default (if any)."""

    name: str
    type: str  # a key of PARAMETER_TYPES
    has_default: bool = False
    default: int | str | bool | bytes | None = None

    def __post_init__(self) -> None:
        if self.type not in PARAMETER_TYPES:
            raise InvalidError(f"parameter {self.name!r} must be of type int, str, bool or "
                               f"bytes, not {self.type!r}")


# Parameters name a container pool, so they stay small: Modal's int is 64-bit.
MAX_PARAMETER_CHARS = 1024
INT64 = (-(2**63), 2**63 - 1)


def check_parameter_value(param: ParameterSpec, value: object) -> int | str | bool | bytes:
    """``value`` if it is a valid value of the parameter, else InvalidError."""
    expected = PARAMETER_TYPES[param.type]
    if type(value) is not expected:  # exact: True is not an int parameter, nor 1 a bool
        raise InvalidError(f"parameter {param.name!r} must be a {param.type}, not "
                           f"{type(value).__name__} {value!r:.80}")
    if isinstance(value, int) and not isinstance(value, bool) \
            and not INT64[0] <= value <= INT64[1]:
        raise InvalidError(f"parameter {param.name!r} must fit in 64 bits")
    if isinstance(value, (str, bytes)) and len(value) > MAX_PARAMETER_CHARS:
        raise InvalidError(f"parameter {param.name!r} is {len(value)} long; the limit is "
                           f"{MAX_PARAMETER_CHARS}")
    assert isinstance(value, (int, str, bytes))
    return value


@dataclasses.dataclass(frozen=True)
class ClassSpec:
    """What the registry knows of a class: its methods and its parameters (its code runs
    only in containers)."""

    methods: tuple[str, ...]
    parameters: tuple[ParameterSpec, ...] = ()
    generators: tuple[str, ...] = ()  # the methods that yield (called with remote_gen)

    def __post_init__(self) -> None:
        for method in self.methods:
            if not isinstance(method, str) or not method.isidentifier():
                raise InvalidError(f"a method name must be an identifier, not {method!r}")
        if not set(self.generators) <= set(self.methods):
            raise InvalidError("a generator method must be one of the class's methods")
        names = [p.name for p in self.parameters]
        if len(set(names)) < len(names) or len(set(self.methods)) < len(self.methods):
            raise InvalidError("a class names a method or a parameter twice")
        for param in self.parameters:
            if not isinstance(param, ParameterSpec) or not param.name.isidentifier():
                raise InvalidError(f"invalid class parameter {param!r}")
            if param.has_default:
                check_parameter_value(param, param.default)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClassSpec:
        params = []
        for raw in data.get("parameters", ()):
            fields = dict(raw)
            if fields.get("type") == "bytes" and isinstance(fields.get("default"), str):
                fields["default"] = bytes.fromhex(fields["default"])
            params.append(ParameterSpec(**fields))
        return cls(tuple(data["methods"]), tuple(params), tuple(data.get("generators", ())))

    def to_dict(self) -> dict[str, Any]:
        return {
            "methods": list(self.methods),
            "generators": list(self.generators),
            "parameters": [
                {**dataclasses.asdict(p),
                 "default": p.default.hex() if isinstance(p.default, bytes) else p.default}
                for p in self.parameters
            ],
        }


def _parse_gpu(gpu: object) -> float:
    """Modal spells GPUs as ``"T4"``, ``"A100:2"``, ``"any"`` or a count."""
    if gpu is None:
        return 0.0
    spec = getattr(gpu, "spec", None)  # a rayfn.gpu object
    if callable(spec):
        gpu = spec()
    if isinstance(gpu, (list, tuple)) and gpu:
        gpu = gpu[0]  # Modal's list of acceptable types, in order of preference
    if isinstance(gpu, bool):
        raise InvalidError(f"gpu must be a count or a GPU type such as 'T4', not {gpu!r}")
    if isinstance(gpu, (int, float)):
        return _check_range("gpu", gpu, 0.0, MAX_GPU)
    if isinstance(gpu, str) and gpu.strip():
        _, _, count = gpu.partition(":")
        if not count:
            return 1.0
        try:
            value = float(count)
        except ValueError:
            raise InvalidError(f"gpu {gpu!r}: the count after ':' must be a number") from None
        if not 0 < value <= MAX_GPU:
            raise InvalidError(f"gpu {gpu!r}: the count must be above 0 and at most "
                               f"{MAX_GPU:g}")
        return value
    raise InvalidError(f"gpu must be a count or a GPU type such as 'T4', not {gpu!r}")


def _count(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidError(f"{name} must be an integer, not {value!r}")
    if not low <= value <= MAX_CONTAINERS:
        raise InvalidError(f"{name} must be between {low} and {MAX_CONTAINERS}, not {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class FunctionOptions:
    """Everything ``@app.function(...)`` and ``@app.cls(...)`` accept, validated once.

    Classes, and functions that take several inputs at once (``max_inputs``) or in
    batches (``max_batch_size``), run in containers: Ray actors that live across calls
    (see ``uses_containers``)."""

    retries: Retries | None = None
    timeout: float = 300.0
    max_containers: int | None = None
    min_containers: int = 0
    cpu: float | None = None
    memory: int | None = None  # MiB, as in Modal
    gpu: float = 0.0
    web_endpoint: WebEndpoint | None = None  # set by @rayfn.asgi_app()
    buffer_containers: int = 0  # spare containers kept while the pool is busy
    scaledown_window: float = 60.0  # seconds a container may idle before it stops
    max_inputs: int = 1  # @concurrent: inputs one container takes at once
    target_inputs: int | None = None  # @concurrent: what the pool sizes for
    max_batch_size: int = 0  # @batched: most inputs per invocation (0: not batched)
    batch_wait_ms: int = 0  # @batched: how long a batch may wait to fill
    cls: ClassSpec | None = None  # set by @app.cls()
    generator: bool = False  # a generator function: called with remote_gen()
    # Mounted in the call's process: (absolute path, volume name), sorted by path.
    volumes: tuple[tuple[str, str], ...] = ()
    secrets: tuple[str, ...] = ()  # names of secrets the service stores, set as env vars
    schedule: str | None = None  # a Period or Cron as canonical JSON (rayfn.schedule)

    @property
    def uses_containers(self) -> bool:
        """Whether calls run in container actors rather than one Ray task per call (or
        per few short calls): classes need a live instance, concurrent and batched
        functions a process that takes several inputs at once."""
        return self.cls is not None or self.max_inputs > 1 or self.max_batch_size > 0

    @property
    def inputs_per_container(self) -> int:
        """The target the pool sizes for: ``target_inputs`` (else ``max_inputs``)."""
        return self.target_inputs or self.max_inputs

    @classmethod
    def build(
        cls,
        *,
        retries: int | Retries | None = None,
        timeout: float = 300,
        max_containers: int | None = None,
        min_containers: int = 0,
        cpu: float | None = None,
        memory: int | None = None,
        gpu: object = None,
        web_endpoint: WebEndpoint | None = None,
        buffer_containers: int = 0,
        scaledown_window: float = 60.0,
        max_inputs: int = 1,
        target_inputs: int | None = None,
        max_batch_size: int = 0,
        batch_wait_ms: int = 0,
        cls_spec: ClassSpec | None = None,
        generator: bool = False,
        volumes: Iterable[tuple[str, str]] = (),
        secrets: Iterable[str] = (),
        schedule: str | None = None,
    ) -> FunctionOptions:
        if retries is not None and not isinstance(retries, Retries):
            if isinstance(retries, bool) or not isinstance(retries, int):
                raise InvalidError(f"retries must be an integer or Retries, not {retries!r}")
            if retries < 0:
                raise InvalidError("retries must be >= 0")
            retries = Retries.fixed(retries)
        timeout = _check_range("timeout", timeout, MIN_TIMEOUT, MAX_TIMEOUT)
        if max_containers is not None:
            max_containers = _count("max_containers", max_containers, 1)
        min_containers = _count("min_containers", min_containers, 0)
        if max_containers is not None and min_containers > max_containers:
            raise InvalidError(
                f"min_containers ({min_containers}) must be <= max_containers ({max_containers})"
            )
        buffer_containers = _count("buffer_containers", buffer_containers, 0)
        scaledown_window = _check_range("scaledown_window", scaledown_window,
                                        MIN_SCALEDOWN_WINDOW, MAX_SCALEDOWN_WINDOW)
        if cpu is not None and not 0 < _check_range("cpu", cpu, 0.0, MAX_CPU):
            raise InvalidError("cpu must be positive")
        if memory is not None and (
            isinstance(memory, bool) or not isinstance(memory, int)
            or not 0 < memory <= MAX_MEMORY_MIB
        ):
            raise InvalidError(f"memory must be a number of MiB between 1 and "
                               f"{MAX_MEMORY_MIB}, not {memory!r}")
        if web_endpoint is not None and not isinstance(web_endpoint, WebEndpoint):
            raise InvalidError(f"web_endpoint must be a WebEndpoint, not {web_endpoint!r}")
        max_inputs, target_inputs = check_concurrency(max_inputs, target_inputs)
        max_batch_size, batch_wait_ms = check_batching(max_batch_size, batch_wait_ms,
                                                       allow_off=True)
        if max_batch_size and max_inputs > 1:
            raise InvalidError("@batched and @concurrent cannot be combined")
        if cls_spec is not None and not isinstance(cls_spec, ClassSpec):
            raise InvalidError(f"cls_spec must be a ClassSpec, not {cls_spec!r}")
        if not isinstance(generator, bool):
            raise InvalidError(f"generator must be a bool, not {generator!r}")
        return cls(
            retries=retries,
            timeout=timeout,
            max_containers=max_containers,
            min_containers=min_containers,
            cpu=None if cpu is None else float(cpu),
            memory=memory,
            gpu=_parse_gpu(gpu),
            web_endpoint=web_endpoint,
            buffer_containers=buffer_containers,
            scaledown_window=scaledown_window,
            max_inputs=max_inputs,
            target_inputs=target_inputs,
            max_batch_size=max_batch_size,
            batch_wait_ms=batch_wait_ms,
            cls=cls_spec,
            generator=generator,
            volumes=check_mounts(volumes),
            secrets=check_secret_names(secrets),
            schedule=check_schedule(schedule),
        )

    def arguments(self) -> dict[str, Any]:
        """These options as ``build``'s keyword arguments (to rebuild them changed)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields["cls_spec"] = fields.pop("cls")
        return fields

    def overridden(self, overrides: Mapping[str, Any]) -> FunctionOptions:
        """These options with some replaced (``with_options``), checked as at decoration."""
        unknown = set(overrides) - set(OVERRIDABLE)
        if unknown:
            raise InvalidError(f"with_options does not take {', '.join(sorted(unknown))}")
        return FunctionOptions.build(**{**self.arguments(), **overrides})

    def ray_options(self) -> dict[str, Any]:
        """The Ray task options for one attempt of this function."""
        options: dict[str, Any] = {"num_cpus": 1.0 if self.cpu is None else self.cpu}
        if self.gpu:
            options["num_gpus"] = self.gpu
        if self.memory:
            options["memory"] = self.memory * 1024 * 1024
        return options

    def resource_shape(self) -> dict[str, float]:
        """One container of this function as an autoscaler bundle (``request_resources``)."""
        ray_options = self.ray_options()
        shape = {"CPU": float(ray_options["num_cpus"])}
        if "num_gpus" in ray_options:
            shape["GPU"] = float(ray_options["num_gpus"])
        if "memory" in ray_options:
            shape["memory"] = float(ray_options["memory"])
        return shape

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["cls"] = None if self.cls is None else self.cls.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FunctionOptions:
        fields = dict(data)
        retries = fields.pop("retries", None)
        web_endpoint = fields.pop("web_endpoint", None)
        spec = fields.pop("cls", None)
        fields["volumes"] = tuple(tuple(pair) for pair in fields.get("volumes", ()))
        fields["secrets"] = tuple(fields.get("secrets", ()))
        return cls(
            retries=Retries(**retries) if retries else None,
            web_endpoint=WebEndpoint(**web_endpoint) if web_endpoint else None,
            cls=ClassSpec.from_dict(spec) if spec else None,
            **fields,
        )


# What ``with_options`` may change: resources, timeouts, retries and scaling.
OVERRIDABLE = ("retries", "timeout", "max_containers", "min_containers", "cpu", "memory",
               "gpu", "buffer_containers", "scaledown_window", "max_inputs",
               "target_inputs", "max_batch_size", "batch_wait_ms")


# Where a volume may not be mounted: the root, and what the system itself keeps there.
_SYSTEM_PATHS = ("/", "/proc", "/sys", "/dev", "/bin", "/sbin", "/lib", "/lib64", "/usr",
                 "/etc", "/boot", "/run", "/var", "/tmp")


def check_mounts(volumes: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """``volumes={"/path": volume}`` as sorted (path, name) pairs: each path absolute and
    normal, no path inside another, no volume mounted twice."""
    pairs: list[tuple[str, str]] = []
    for pair in volumes:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise InvalidError(f"volumes must map paths to volumes, not {pair!r}")
        path, name = pair
        if not isinstance(path, str) or not path.startswith("/") \
                or posixpath.normpath(path) != path or "\x00" in path:
            raise InvalidError(f"a volume's mount path must be an absolute, normal path such "
                               f"as '/data', not {path!r}")
        if path in _SYSTEM_PATHS:
            raise InvalidError(f"a volume cannot be mounted at {path}: the system uses it")
        pairs.append((path, validate_name("volume", name)))
    pairs.sort()
    names = [name for _, name in pairs]
    for name in set(names):
        if names.count(name) > 1:
            raise InvalidError(f"volume {name!r} is mounted twice "
                               f"({', '.join(p for p, n in pairs if n == name)})")
    for (outer, _), (inner, _) in zip(pairs, pairs[1:], strict=False):
        if inner == outer or inner.startswith(outer + "/"):
            raise InvalidError(f"volume mount {inner} is inside mount {outer}")
    return tuple(pairs)


def check_secret_names(secrets: Iterable[str]) -> tuple[str, ...]:
    names = tuple(validate_name("secret", name) for name in secrets)
    return tuple(dict.fromkeys(names))


def check_schedule(schedule: str | None) -> str | None:
    """A schedule's canonical JSON, checked by ``rayfn.schedule`` (Period or Cron)."""
    if schedule is None:
        return None
    from rayfn.schedule import schedule_from_json

    return schedule_from_json(schedule).to_json()


def check_concurrency(max_inputs: object, target_inputs: object = None) -> tuple[int, int | None]:
    """``@concurrent(max_inputs=N, target_inputs=M)``: 1 <= M <= N <= MAX_INPUTS."""
    if isinstance(max_inputs, bool) or not isinstance(max_inputs, int):
        raise InvalidError(f"max_inputs must be an integer, not {max_inputs!r}")
    if not 1 <= max_inputs <= MAX_INPUTS:
        raise InvalidError(f"max_inputs must be between 1 and {MAX_INPUTS}, not {max_inputs}")
    if target_inputs is None:
        return max_inputs, None
    if isinstance(target_inputs, bool) or not isinstance(target_inputs, int):
        raise InvalidError(f"target_inputs must be an integer, not {target_inputs!r}")
    if not 1 <= target_inputs <= max_inputs:
        raise InvalidError(f"target_inputs must be between 1 and max_inputs "
                           f"({max_inputs}), not {target_inputs}")
    return max_inputs, target_inputs


def check_batching(max_batch_size: object, wait_ms: object,
                   *, allow_off: bool = False) -> tuple[int, int]:
    """``@batched(max_batch_size=N, wait_ms=W)``: 1 <= N <= 1000, 0 <= W <= 10 min."""
    low = 0 if allow_off else 1
    if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int):
        raise InvalidError(f"max_batch_size must be an integer, not {max_batch_size!r}")
    if not low <= max_batch_size <= MAX_BATCH_SIZE:
        raise InvalidError(f"max_batch_size must be between 1 and {MAX_BATCH_SIZE}, "
                           f"not {max_batch_size}")
    if isinstance(wait_ms, bool) or not isinstance(wait_ms, int):
        raise InvalidError(f"wait_ms must be an integer number of milliseconds, not "
                           f"{wait_ms!r}")
    if not 0 <= wait_ms <= MAX_BATCH_WAIT_MS:
        raise InvalidError(f"wait_ms must be between 0 and {MAX_BATCH_WAIT_MS}, not {wait_ms}")
    return max_batch_size, wait_ms
