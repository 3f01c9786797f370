"""Leases: what pull workers and several masters share through the store.

Two sides, two interfaces:

* :class:`PullStore` is all a pull worker (``python -m worker_node pull``) can do with its
  credential: say hello (it appears in ``worker_nodes`` as ``pull://NAME``), claim
  subtasks under a lease, extend its leases, complete with a result, and wait for work.
  It needs only the store's address and ``NADG_WORKER_CREDENTIAL``
  (:class:`PullSettings`); :func:`open_pull_store` picks Postgres (``DATABASE_URL``, LISTEN/
  NOTIFY wakes it) or Supabase (``SUPABASE_URL`` + ``SUPABASE_ANON_KEY``, a long-poll RPC).
* :class:`LeaseStore` is the master's side, on a store opened with the owner's or the
  service key's rights: task leases (one master runs a task; a dead master's tasks are
  adopted after their lease), holding subtasks for push workers, enrolling and revoking
  pull workers' credentials. :func:`lease_store` gives it for a Postgres or Supabase store
  and None for SQLite (one process, nothing to share).

The SQL behind both is in :mod:`database.schema.lease_routines`. Only the SHA-256 of a
credential is stored (:func:`credential_hash`); a credential has 256 random bits.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from database.store import Store, StoreConfigError, StoreError

#: ``worker_nodes.vm_url`` of a pull worker: ``pull://NAME`` (no inbound URL to call).
PULL_SCHEME = "pull://"
#: A credential starts with this, so that a leaked one is recognisable (secret scanners).
CREDENTIAL_PREFIX = "nadgp_"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
#: The NOLOGIN role pull workers act as on Postgres (see database/schema.sql).
PULL_ROLE = "nadg_pull"


class CredentialRefused(StoreError):
    """The store refused the pull worker's credential (unknown, revoked) or the call."""


class DuplicateCredential(StoreError):
    """A live credential is enrolled under that name already (revoke it first)."""


class CredentialNotFound(StoreError):
    """No live credential under that name."""


def is_pull_url(vm_url: str) -> bool:
    """True for the registry URL of a pull worker (``pull://NAME``)."""
    return vm_url.startswith(PULL_SCHEME)


def pull_url(name: str) -> str:
    """The registry URL of the pull worker ``name``."""
    return PULL_SCHEME + name


def check_name(name: str) -> str:
    """``name`` if it may name a pull worker, else ValueError saying what is allowed."""
    if not NAME_RE.match(name):
        raise ValueError(f"bad pull worker name {name!r}: use 1-63 letters, digits, '.', '_'"
                         " or '-', starting with a letter or digit")
    return name


def new_credential() -> str:
    """A fresh credential: the prefix and 256 random bits, URL-safe."""
    return CREDENTIAL_PREFIX + secrets.token_urlsafe(32)


def credential_hash(credential: str) -> str:
    """What the store keeps of a credential: its SHA-256, hex (what the SQL computes)."""
    return hashlib.sha256(credential.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Lease:
    """A subtask a pull worker holds until ``expires_at`` (unless it extends the lease)."""

    subtask_id: str
    task_id: str
    kind: str
    payload: dict[str, Any]
    expires_at: datetime | None = None


@runtime_checkable
class PullStore(Protocol):
    """What a pull worker may do with its credential, and nothing else."""

    def hello(self, capabilities: Sequence[str], max_concurrency: int,
              version: str) -> int:
        """Register (or refresh) this worker as ``pull://NAME``; returns its worker id."""
        ...

    def claim(self, max_count: int, lease_s: float, kinds: Sequence[str] | None = None,
              wait_s: float = 0.0) -> list[Lease]:
        """Lease up to ``max_count`` claimable subtasks for ``lease_s`` seconds
        (waiting up to ``wait_s`` for one where the backend long-polls)."""
        ...

    def extend(self, subtask_ids: Sequence[str], lease_s: float) -> list[str]:
        """Extend this worker's leases; returns the ids it still holds."""
        ...

    def complete(self, subtask_id: str, status: str, result: dict[str, Any] | None,
                 error: str | None) -> bool:
        """Record an outcome (``completed`` or ``failed``) of a subtask this worker holds.

        False when the store kept another result (first completed wins) or the lease
        went to another worker: nothing changed then.
        """
        ...

    def wait_for_work(self, timeout_s: float) -> bool:
        """Block until work may be claimable or ``timeout_s`` passes; True when woken."""
        ...

    @property
    def long_polls(self) -> bool:
        """True when :meth:`claim` itself waits (``wait_s``) instead of :meth:`wait_for_work`."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


@runtime_checkable
class LeaseStore(Protocol):
    """The master's side of leases (owner or service-key rights)."""

    def acquire_task(self, task_id: str, owner: str, lease_s: float,
                     grace_s: float = 0.0) -> bool:
        """Take or renew the lease on an unfinished task; True when ``owner`` holds it."""
        ...

    def release_task(self, task_id: str, owner: str) -> bool:
        """Let go of a task this owner holds."""
        ...

    def adoptable_tasks(self, grace_s: float) -> list[str]:
        """Unfinished tasks no live master holds, oldest first."""
        ...

    def hold_subtasks(self, task_id: str, subtask_ids: Sequence[str] | None, owner: str,
                      lease_s: float) -> list[str]:
        """Hold subtasks (None: every open one of the task) for the master's push workers;
        returns those now held."""
        ...

    def release_subtasks(self, task_id: str, subtask_ids: Sequence[str], owner: str) -> int:
        """Give held subtasks to the pull workers (and wake them); returns how many."""
        ...

    def enroll(self, name: str) -> str:
        """Enroll pull worker ``name``; returns its new credential (stored as a hash)."""
        ...

    def revoke(self, name: str) -> None:
        """End ``name``'s credential now; raises CredentialNotFound."""
        ...


class PullSettings(BaseSettings):
    """A pull worker's store settings: the address and its credential, nothing more."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    credential: SecretStr | None = Field(default=None, validation_alias="NADG_WORKER_CREDENTIAL")
    database_url: SecretStr | None = Field(default=None, validation_alias="DATABASE_URL")
    supabase_url: str | None = Field(default=None, validation_alias="SUPABASE_URL")
    supabase_anon_key: SecretStr | None = Field(default=None,
                                                validation_alias="SUPABASE_ANON_KEY")
    timeout_s: float = Field(default=30.0, gt=0, validation_alias="NADG_DB_TIMEOUT_S")

    def check(self) -> str:
        """The backend these settings select (``postgres`` or ``supabase``), or
        StoreConfigError naming the variable to set."""
        cred = self.credential.get_secret_value().strip() if self.credential else ""
        if not cred:
            raise StoreConfigError(
                "NADG_WORKER_CREDENTIAL is not set: enroll this worker with `python -m "
                "database.manage_workers enroll NAME` and set the line it prints")
        if len(cred.encode()) < 32:
            raise StoreConfigError("NADG_WORKER_CREDENTIAL is shorter than 32 bytes: use the"
                                   " whole line `manage_workers enroll NAME` printed")
        if self.supabase_url and self.supabase_url.strip():
            if not (self.supabase_anon_key and self.supabase_anon_key.get_secret_value()):
                raise StoreConfigError(
                    "SUPABASE_URL is set but SUPABASE_ANON_KEY is not: set it to the project's"
                    " anon (public) key; a pull worker never needs the service key")
            return "supabase"
        if self.database_url and self.database_url.get_secret_value():
            return "postgres"
        raise StoreConfigError(
            "a pull worker needs the store's address: set DATABASE_URL (a login role that is"
            " a member of nadg_pull) or SUPABASE_URL with SUPABASE_ANON_KEY")


def open_pull_store(settings: PullSettings | None = None) -> PullStore:
    """The pull worker's store client for the configured backend."""
    if settings is None:
        try:
            settings = PullSettings()
        except ValidationError as exc:
            raise StoreConfigError(f"bad pull worker setting: {exc.errors()[0]['msg']}") from exc
    backend = settings.check()
    credential = settings.credential.get_secret_value().strip() if settings.credential else ""
    if backend == "supabase":
        from database.backends.pull_supabase import SupabasePullStore

        assert settings.supabase_url and settings.supabase_anon_key
        return SupabasePullStore(settings.supabase_url.strip(),
                                 settings.supabase_anon_key.get_secret_value(), credential,
                                 timeout_s=settings.timeout_s)
    from database.backends.pull_postgres import PostgresPullStore

    assert settings.database_url
    return PostgresPullStore(settings.database_url.get_secret_value(), credential,
                             timeout_s=settings.timeout_s)


def lease_store(store: Store) -> LeaseStore | None:
    """The master's lease operations on ``store``; None where the backend has no leases
    (SQLite: one process owns the file, there is nothing to share)."""
    if store.backend_name == "postgres":
        from database.backends.leases_sql import PostgresLeases

        return PostgresLeases(store)
    if store.backend_name == "supabase":
        from database.backends.leases_sql import SupabaseLeases

        return SupabaseLeases(store)
    return None


__all__ = ["CREDENTIAL_PREFIX", "PULL_ROLE", "PULL_SCHEME", "CredentialNotFound",
           "CredentialRefused", "DuplicateCredential", "Lease", "LeaseStore", "PullSettings",
           "PullStore", "check_name", "credential_hash", "is_pull_url", "lease_store",
           "new_credential", "open_pull_store", "pull_url"]
