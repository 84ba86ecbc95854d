"""A stored call as clients see it: its status, and its outcome for ``get``.

Shared by the registry and by the REST server, which reads finished calls from the
store itself (see ``store/reader.py``).
"""

from __future__ import annotations

from rayfn.protocol.payload import CallOutcome
from rayfn.schemas import CallStatus
from rayfn_service.store import CallRecord


def is_expired(record: CallRecord, now: float) -> bool:
    return record.expired or (record.expires_at is not None and record.expires_at <= now)


def status_of(record: CallRecord, now: float) -> CallStatus:
    return CallStatus(
        call_id=record.id,
        app=record.app,
        function=record.function,
        version=record.version,
        state=record.state,
        attempts=record.attempts,
        created_at=record.created_at,
        started_at=record.started_at,
        finished_at=record.finished_at,
        expires_at=record.expires_at,
        expired=is_expired(record, now),
        error_type=record.error.type_name if record.error else None,
        error_message=record.error.message if record.error else None,
        error_traceback=(record.error.traceback or None) if record.error else None,
    )


def outcome_of(record: CallRecord, now: float) -> CallOutcome:
    if is_expired(record, now):
        return CallOutcome(call_id=record.id, state=record.state, expired=True)
    return CallOutcome(
        call_id=record.id,
        state=record.state,
        result=record.result,
        error=record.error,
        result_json=record.result_json,
    )
