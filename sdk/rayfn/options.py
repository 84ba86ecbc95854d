"""Function options, validated once at decoration into frozen objects."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any

from rayfn.exception import InvalidError

__all__ = ["Retries", "FunctionOptions", "Image", "WebEndpoint"]

MIN_TIMEOUT = 1.0
MAX_TIMEOUT = 24 * 3600.0
MAX_RETRIES = 100
# Upper bounds of the resource options: far beyond any real cluster, small enough that
# every product the registry makes of them (bytes, autoscaler bundles) stays exact.
MAX_CONTAINERS = 10_000
MAX_CPU = 1024.0
MAX_GPU = 256.0
MAX_MEMORY_MIB = 16 * 1024 * 1024  # 16 TiB
WEB_ENDPOINT_KINDS = ("asgi",)
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
class Image:
    """A container environment, mapped onto Ray's runtime environments.

    ``debian_slim()`` is the cluster's own environment; ``pip_install`` adds ``pip``
    packages, ``env`` adds environment variables, ``from_registry`` names a container image.
    """

    pip: tuple[str, ...] = ()
    env_vars: tuple[tuple[str, str], ...] = ()
    image_uri: str | None = None

    @classmethod
    def debian_slim(cls, python_version: str | None = None) -> Image:
        return cls()

    @classmethod
    def from_registry(cls, tag: str, **_: Any) -> Image:
        if not isinstance(tag, str) or not tag.strip():
            raise InvalidError("from_registry needs an image reference such as 'python:3.11'")
        return cls(image_uri=tag)

    def pip_install(self, *packages: str | list[str]) -> Image:
        flat: list[str] = []
        for item in packages:
            if isinstance(item, str) or not isinstance(item, Iterable):
                flat.append(item)  # a non-string is rejected below
            else:
                flat.extend(item)
        for package in flat:
            if not isinstance(package, str) or not package.strip():
                raise InvalidError(f"pip_install takes package names, not {package!r}")
        return dataclasses.replace(self, pip=self.pip + tuple(flat))

    def env(self, variables: Mapping[str, str]) -> Image:
        merged = dict(self.env_vars)
        for key, value in variables.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise InvalidError("env takes a mapping of strings to strings")
            merged[key] = value
        return dataclasses.replace(self, env_vars=tuple(sorted(merged.items())))

    def runtime_env(self) -> dict[str, Any]:
        """This image as a Ray ``runtime_env`` (empty for the cluster's own environment)."""
        env: dict[str, Any] = {}
        if self.pip:
            env["pip"] = list(self.pip)
        if self.env_vars:
            env["env_vars"] = dict(self.env_vars)
        if self.image_uri:
            env["image_uri"] = self.image_uri
        return env


@dataclasses.dataclass(frozen=True)
class WebEndpoint:
    """Marks a function as a web endpoint: it returns an app that is served over HTTP.

    ``kind`` is what the function returns (``"asgi"``: an ASGI app such as FastAPI);
    ``label`` names its URL path instead of the function's name.
    """

    kind: str = "asgi"
    label: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in WEB_ENDPOINT_KINDS:
            raise InvalidError(f"unknown web endpoint kind {self.kind!r}")
        if self.label is not None and (
            not isinstance(self.label, str) or not _LABEL.fullmatch(self.label)
        ):
            raise InvalidError(
                f"label must be 1-63 lowercase letters, digits and dashes, not {self.label!r}"
            )


def _parse_gpu(gpu: object) -> float:
    """Modal spells GPUs as ``"T4"``, ``"A100:2"``, ``"any"`` or a count."""
    if gpu is None:
        return 0.0
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
    """Everything ``@app.function(...)`` accepts, validated once."""

    retries: Retries | None = None
    timeout: float = 300.0
    max_containers: int | None = None
    min_containers: int = 0
    cpu: float | None = None
    memory: int | None = None  # MiB, as in Modal
    gpu: float = 0.0
    web_endpoint: WebEndpoint | None = None  # set by @rayfn.asgi_app()

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
        return cls(
            retries=retries,
            timeout=timeout,
            max_containers=max_containers,
            min_containers=min_containers,
            cpu=None if cpu is None else float(cpu),
            memory=memory,
            gpu=_parse_gpu(gpu),
            web_endpoint=web_endpoint,
        )

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
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FunctionOptions:
        fields = dict(data)
        retries = fields.pop("retries", None)
        web_endpoint = fields.pop("web_endpoint", None)
        return cls(
            retries=Retries(**retries) if retries else None,
            web_endpoint=WebEndpoint(**web_endpoint) if web_endpoint else None,
            **fields,
        )
