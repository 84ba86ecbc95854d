"""Durable state: deployments, calls, results and expiry tombstones."""

from rayfn_service.store.base import AppRecord, CallRecord, Claim, FunctionRecord, Store
from rayfn_service.store.sqlite import SqliteStore

__all__ = ["AppRecord", "CallRecord", "Claim", "FunctionRecord", "Store", "SqliteStore"]
