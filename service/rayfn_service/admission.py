"""What a call must be to be accepted: checks the registry makes before it commits
anything, so that a refused spawn leaves nothing queued."""

from __future__ import annotations

from collections.abc import Sequence

from rayfn.exception import InvalidError
from rayfn.options import FunctionOptions
from rayfn.protocol.ids import validate_call_id
from rayfn.protocol.payload import check_input_size

__all__ = ["check_calls", "check_spawnable", "check_wait"]


def check_calls(calls: Sequence[tuple[str, bytes]], max_bytes: int, where: str) -> None:
    """Each ``(call ID, pickled arguments)``: a valid ID, bytes, within the size limit."""
    for call_id, args in calls:
        validate_call_id(call_id)
        if not isinstance(args, bytes):
            raise InvalidError("call arguments must be serialized bytes")
        check_input_size(args, max_bytes, where)


def check_spawnable(options: FunctionOptions, where: str, name: str, generator: bool) -> None:
    """InvalidError for what cannot be spawned: a web endpoint, a generator (called with
    ``remote_gen``) or a plain function with it, a class with parameters named without
    their values."""
    if options.web_endpoint is not None:
        raise InvalidError(f"{where} is a web endpoint (@rayfn.asgi_app()): it is served "
                           "over HTTP, not called")
    if options.cls is not None:
        pass  # which method a call names is in its pickled arguments: the container checks
    elif options.generator and not generator:
        raise InvalidError(f"{where} is a generator function: call it with remote_gen(), "
                           "it cannot be spawned")
    elif generator and not options.generator:
        raise InvalidError(f"{where} is not a generator function: call it with remote() "
                           "or spawn()")
    spec = options.cls
    if spec is not None and spec.parameters and name == where.rpartition(".")[2]:
        raise InvalidError(f"class {where} has parameters: call it as "
                           f"{where.rpartition('.')[2]}(name=value).method")


def check_wait(timeout: object) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
            or not timeout >= 0:
        raise InvalidError(f"timeout must be a number of seconds >= 0, not {timeout!r}")
    return float(timeout)
