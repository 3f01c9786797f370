"""The master's lease operations (:class:`database.leases.LeaseStore`) on Postgres and
Supabase: thin calls of the SQL functions in :mod:`database.schema.lease_routines`, so
both backends share one implementation of every rule."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from database.leases import (
    CredentialNotFound,
    DuplicateCredential,
    check_name,
    credential_hash,
    new_credential,
)
from database.store import Store

if TYPE_CHECKING:  # supabase-py is imported only where the Supabase backend is used
    from database.backends.supabase_base import SupabaseBase


def scalars(data: Any) -> list[str]:
    """The values of a set-returning RPC of one column: PostgREST answers a JSON array of
    scalars or of one-key objects (``{"fn": value}``) depending on its version."""
    out = []
    for item in data or []:
        out.append(str(next(iter(item.values())) if isinstance(item, dict) else item))
    return out


def _enrolled(name: str, ok: bool) -> None:
    if not ok:
        raise DuplicateCredential(
            f"a pull worker named {name!r} is enrolled already; revoke it first (`python -m"
            f" database.manage_workers revoke {name}`) or choose another name")


def _revoked(name: str, ok: bool) -> None:
    if not ok:
        raise CredentialNotFound(f"no live credential named {name!r}; see the workers with"
                                 " `python -m database.manage_workers list`")


class PostgresLeases:
    """Lease operations through the Postgres store's own connection pool."""

    def __init__(self, store: Store) -> None:
        self._store: Any = store  # a PostgresStore: its _tx() yields a Query

    def _one(self, sql: str, params: Sequence[Any]) -> Any:
        with self._store._tx() as q:
            rows = q.rows(sql, params)
        return next(iter(rows[0].values())) if rows else None

    def _list(self, sql: str, params: Sequence[Any]) -> list[str]:
        with self._store._tx() as q:
            return [str(next(iter(r.values()))) for r in q.rows(sql, params)]

    def acquire_task(self, task_id: str, owner: str, lease_s: float,
                     grace_s: float = 0.0) -> bool:
        """Take or renew the lease on an unfinished task."""
        return bool(self._one("SELECT nadg_task_lease(?, ?, ?, ?)",
                              (task_id, owner, lease_s, grace_s)))

    def release_task(self, task_id: str, owner: str) -> bool:
        """Let go of a task this owner holds."""
        return bool(self._one("SELECT nadg_task_release(?, ?)", (task_id, owner)))

    def adoptable_tasks(self, grace_s: float) -> list[str]:
        """Unfinished tasks no live master holds, oldest first."""
        return self._list("SELECT * FROM nadg_adoptable_tasks(?)", (grace_s,))

    def hold_subtasks(self, task_id: str, subtask_ids: Sequence[str] | None, owner: str,
                      lease_s: float) -> list[str]:
        """Hold subtasks (None: all open ones) for push workers; returns those now held."""
        if subtask_ids is not None and not subtask_ids:
            return []
        return self._list("SELECT * FROM nadg_hold_subtasks(?, ?, ?, ?)",
                          (task_id, None if subtask_ids is None else list(subtask_ids),
                           owner, lease_s))

    def release_subtasks(self, task_id: str, subtask_ids: Sequence[str], owner: str) -> int:
        """Give held subtasks to the pull workers (and wake them); returns how many."""
        if not subtask_ids:
            return 0
        return int(self._one("SELECT nadg_release_subtasks(?, ?, ?)",
                             (task_id, list(subtask_ids), owner)) or 0)

    def enroll(self, name: str) -> str:
        """Enroll pull worker ``name``; returns its credential (only its hash is kept)."""
        credential = new_credential()
        _enrolled(name, bool(self._one("SELECT nadg_pull_enroll(?, ?)",
                                       (check_name(name), credential_hash(credential)))))
        return credential

    def revoke(self, name: str) -> None:
        """End ``name``'s credential now (its leases go back to the queue)."""
        _revoked(name, bool(self._one("SELECT nadg_pull_revoke(?)", (name,))))


class SupabaseLeases:
    """Lease operations through PostgREST RPC calls with the service key."""

    def __init__(self, store: Store) -> None:
        self._store: SupabaseBase = store  # type: ignore[assignment]

    def _rpc(self, fn: str, params: dict[str, Any]) -> Any:
        client = self._store._client
        return self._store._call(lambda: client.rpc(fn, params).execute()).data

    def _list(self, fn: str, params: dict[str, Any]) -> list[str]:
        return scalars(self._rpc(fn, params))

    def acquire_task(self, task_id: str, owner: str, lease_s: float,
                     grace_s: float = 0.0) -> bool:
        """Take or renew the lease on an unfinished task."""
        return bool(self._rpc("nadg_task_lease", {"p_task_id": task_id, "p_owner": owner,
                                                  "p_lease_s": lease_s, "p_grace_s": grace_s}))

    def release_task(self, task_id: str, owner: str) -> bool:
        """Let go of a task this owner holds."""
        return bool(self._rpc("nadg_task_release", {"p_task_id": task_id, "p_owner": owner}))

    def adoptable_tasks(self, grace_s: float) -> list[str]:
        """Unfinished tasks no live master holds, oldest first."""
        return self._list("nadg_adoptable_tasks", {"p_grace_s": grace_s})

    def hold_subtasks(self, task_id: str, subtask_ids: Sequence[str] | None, owner: str,
                      lease_s: float) -> list[str]:
        """Hold subtasks (None: all open ones) for push workers; returns those now held."""
        if subtask_ids is not None and not subtask_ids:
            return []
        return self._list("nadg_hold_subtasks", {
            "p_task_id": task_id,
            "p_ids": None if subtask_ids is None else list(subtask_ids),
            "p_owner": owner, "p_lease_s": lease_s})

    def release_subtasks(self, task_id: str, subtask_ids: Sequence[str], owner: str) -> int:
        """Give held subtasks to the pull workers (and wake them); returns how many."""
        if not subtask_ids:
            return 0
        return int(self._rpc("nadg_release_subtasks", {
            "p_task_id": task_id, "p_ids": list(subtask_ids), "p_owner": owner}) or 0)

    def enroll(self, name: str) -> str:
        """Enroll pull worker ``name``; returns its credential (only its hash is kept)."""
        from database.backends.supabase_base import ApiFailure

        credential = new_credential()
        try:
            ok = self._rpc("nadg_pull_enroll", {"p_name": check_name(name),
                                                "p_hash": credential_hash(credential)})
        except ApiFailure as exc:
            raise DuplicateCredential(f"could not enroll {name!r}: {exc.message}") from exc
        _enrolled(name, bool(ok))
        return credential

    def revoke(self, name: str) -> None:
        """End ``name``'s credential now (its leases go back to the queue)."""
        _revoked(name, bool(self._rpc("nadg_pull_revoke", {"p_name": name})))
