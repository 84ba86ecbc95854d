"""Call IDs: ``fc-`` and a 26-character ULID, so IDs sort by creation time.

IDs made in one process are strictly increasing (monotonic ULIDs), so the inputs of one
``spawn_map`` are dispatched in the order they were given.
"""

from __future__ import annotations

import os
import re
import threading
import time

from rayfn.exception import InvalidError

PREFIX = "fc-"
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PATTERN = re.compile(r"^fc-[0-7][0-9A-HJKMNP-TV-Z]{25}$")
_RANDOM_MAX = (1 << 80) - 1


class _Monotonic:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_random = 0

    def next_values(self, n: int) -> list[int]:
        with self._lock:
            now_ms = time.time_ns() // 1_000_000
            if now_ms > self._last_ms:
                self._last_ms = now_ms
                # Leave headroom so a burst in one millisecond never overflows.
                self._last_random = int.from_bytes(os.urandom(10), "big") >> 1
            out = []
            for _ in range(n):
                self._last_random += 1
                if self._last_random > _RANDOM_MAX:
                    self._last_ms += 1
                    self._last_random = int.from_bytes(os.urandom(10), "big") >> 1
                out.append((self._last_ms << 80) | self._last_random)
            return out


_generator = _Monotonic()


# Two characters (10 bits) per lookup: 13 lookups make the 26 characters of a ULID.
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
_SHIFTS = tuple(range(120, -10, -10))


def _encode(value: int) -> str:
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])


def new_call_ids(n: int) -> list[str]:
    return [PREFIX + _encode(v) for v in _generator.next_values(n)]


def new_call_id() -> str:
    return new_call_ids(1)[0]


def validate_call_id(call_id: object) -> str:
    """Return ``call_id`` if it is well formed, else raise :class:`InvalidError`."""
    if not isinstance(call_id, str) or not _PATTERN.fullmatch(call_id):
        raise InvalidError(f"malformed call ID {call_id!r}: expected 'fc-' and a 26-character ULID")
    return call_id
