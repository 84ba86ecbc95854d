"""Modal's ``Proxy`` (a static outbound IP): rayfn has none; a function given
``proxy=`` is refused (see ``_decorator_options.REFUSED``)."""

from __future__ import annotations

__all__ = ["Proxy"]


class Proxy:
    def __init__(self, name: str) -> None:
        self.name = name

    @classmethod
    def from_name(cls, name: str, *, environment_name: str | None = None) -> Proxy:
        return cls(name)
