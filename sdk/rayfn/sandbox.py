"""Modal's Sandboxes: not part of rayfn (a job service runs functions, not interactive
containers). The names exist so a file that mentions them builds; using one says so."""

from __future__ import annotations

from typing import Any, NoReturn

from rayfn.exception import InvalidError

__all__ = ["Sandbox", "SandboxSnapshot"]

_WHY = ("Sandboxes are not part of rayfn: run the command inside a function "
        "(subprocess.run in an @app.function) instead")


class Sandbox:
    @classmethod
    def create(cls, *args: Any, **kwargs: Any) -> NoReturn:
        raise InvalidError(f"Sandbox.create: {_WHY}")

    @classmethod
    def from_id(cls, *args: Any, **kwargs: Any) -> NoReturn:
        raise InvalidError(f"Sandbox.from_id: {_WHY}")

    @classmethod
    def from_name(cls, *args: Any, **kwargs: Any) -> NoReturn:
        raise InvalidError(f"Sandbox.from_name: {_WHY}")

    @classmethod
    def list(cls, *args: Any, **kwargs: Any) -> NoReturn:
        raise InvalidError(f"Sandbox.list: {_WHY}")


class SandboxSnapshot:
    @classmethod
    def from_id(cls, *args: Any, **kwargs: Any) -> NoReturn:
        raise InvalidError(f"SandboxSnapshot.from_id: {_WHY}")
