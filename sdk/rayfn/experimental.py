"""Modal's ``modal.experimental``: what a file may use at its top level."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from rayfn.exception import InvalidError

__all__ = ["clustered", "get_local_input_concurrency", "set_local_input_concurrency",
           "stop_fetching_inputs"]

F = TypeVar("F", bound=Callable[..., Any])
CLUSTERED_ATTR = "__rayfn_clustered__"


def clustered(size: int, broadcast: bool = True, rdma: bool = False) -> Callable[[F], F]:
    """Modal runs such a function on ``size`` containers at once (a gang). rayfn does not
    gang-schedule: the mark is kept and the deploy refuses it, naming the function."""
    def mark(fn: F) -> F:
        setattr(fn, CLUSTERED_ATTR, size)
        return fn

    return mark


def check_not_clustered(fn: object, name: str) -> None:
    size = getattr(fn, CLUSTERED_ATTR, None)
    if size is not None:
        raise InvalidError(
            f"{name}: @modal.experimental.clustered({size}) asks for {size} containers run "
            f"as one gang; rayfn cannot schedule gangs: start the processes from one "
            f"function with Ray (ray.util.placement_group) instead")


def stop_fetching_inputs() -> None:
    """Modal stops the container taking new inputs; a rayfn container is stopped by the
    registry when idle, so this does nothing."""


def get_local_input_concurrency() -> int:
    return 1


def set_local_input_concurrency(concurrency: int) -> None:
    """Accepted; rayfn sizes a container's inputs with ``@concurrent``."""
