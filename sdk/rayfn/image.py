"""Image: the environment a function's calls run in, mapped onto Ray's runtime environments."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from rayfn._deferred_imports import ImportBlock
from rayfn.exception import InvalidError

__all__ = ["Image"]


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

    def imports(self) -> ImportBlock:
        """``with image.imports(): import torch``: an ImportError inside is suppressed
        here (the package may be only in the image); the block runs again in the worker,
        where an ImportError is an error."""
        return ImportBlock()

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
