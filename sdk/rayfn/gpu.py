"""Modal's GPU objects (``gpu=modal.gpu.A100(count=2)``): the type is a label, the count
is what Ray schedules on (Ray's ``num_gpus``); prefer the string form ``gpu="A100:2"``."""

from __future__ import annotations

__all__ = ["A10G", "A100", "Any", "B200", "GPU", "H100", "H200", "L4", "L40S", "T4"]


class GPU:
    """``count`` GPUs of a type."""

    type_name = "any"

    def __init__(self, *, count: int = 1, size: str | None = None) -> None:
        self.count = count
        self.size = size

    def __repr__(self) -> str:
        return f"gpu.{type(self).__name__}(count={self.count})"

    def spec(self) -> str:
        """The string form Modal (and rayfn) also take: ``"A100:2"``."""
        return f"{self.type_name}:{self.count}"


class T4(GPU):
    type_name = "T4"


class L4(GPU):
    type_name = "L4"


class A10G(GPU):
    type_name = "A10G"


class A100(GPU):
    type_name = "A100"


class L40S(GPU):
    type_name = "L40S"


class H100(GPU):
    type_name = "H100"


class H200(GPU):
    type_name = "H200"


class B200(GPU):
    type_name = "B200"


class Any(GPU):
    type_name = "any"
