"""NEXUS Grid registry and job store: one interface, three backends (see store.py)."""

from database.config import StoreSettings, open_store
from database.store import (
    DuplicateWorker,
    JobStore,
    ModelStore,
    Registry,
    SchemaOutdated,
    Store,
    StoreConfigError,
    StoreError,
    StoreUnavailable,
    SubtaskNotFound,
    TaskNotFound,
    WorkerNotFound,
)

__all__ = [
    "DuplicateWorker",
    "JobStore",
    "ModelStore",
    "Registry",
    "SchemaOutdated",
    "Store",
    "StoreConfigError",
    "StoreError",
    "StoreSettings",
    "StoreUnavailable",
    "SubtaskNotFound",
    "TaskNotFound",
    "WorkerNotFound",
    "open_store",
]
