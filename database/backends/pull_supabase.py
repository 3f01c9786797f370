"""A pull worker's store client on Supabase (``SUPABASE_URL`` + ``SUPABASE_ANON_KEY``).

Every call is a PostgREST RPC with the project's anon key; the functions check
``NADG_WORKER_CREDENTIAL`` themselves, and RLS denies anon every table. An idle worker
waits inside :meth:`SupabasePullStore.claim` (a long poll: the function looks again every
0.1 s for up to ``wait_s``), so new work wakes it within a fraction of a second at one
request per ``wait_s`` while idle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
from postgrest.exceptions import APIError
from supabase import ClientOptions, create_client

from database.backends.leases_sql import scalars
from database.backends.rows import js, ts
from database.leases import CredentialRefused, Lease
from database.schema.lease_routines import MAX_WAIT_S
from database.store import StoreError, StoreUnavailable

#: SQLSTATEs / PostgREST codes meaning "not you": a refused credential, no privilege, a
#: rejected key.
REFUSED = frozenset({"28000", "42501", "PGRST301", "PGRST302", "401"})


class SupabasePullStore:
    """:class:`database.leases.PullStore` through supabase-py RPC calls."""

    long_polls = True

    def __init__(self, url: str, anon_key: str, credential: str, *,
                 timeout_s: float = 30.0) -> None:
        self._url, self._credential = url, credential
        try:
            self._client = create_client(url, anon_key, options=ClientOptions(
                postgrest_client_timeout=max(timeout_s, MAX_WAIT_S + 10)))
        except Exception as exc:  # supabase-py raises plain exceptions on a bad URL or key
            raise StoreUnavailable(f"cannot create a Supabase client for {url}: {exc}; check"
                                   " SUPABASE_URL and SUPABASE_ANON_KEY") from exc

    def _rpc(self, fn: str, params: dict[str, Any]) -> Any:
        try:
            return self._client.rpc(fn, {"p_credential": self._credential, **params}).execute(
            ).data
        except httpx.HTTPError as exc:
            raise StoreUnavailable(f"cannot reach Supabase at {self._url}: {exc}") from exc
        except APIError as exc:
            code, message = str(exc.code or ""), str(exc.message or exc)
            if code in REFUSED:
                raise CredentialRefused(f"{message} ({code})") from exc
            raise StoreError(f"Supabase refused {fn} ({code}): {message}") from exc

    def hello(self, capabilities: Sequence[str], max_concurrency: int, version: str) -> int:
        """Register (or refresh) this worker as ``pull://NAME``; returns its worker id."""
        return int(self._rpc("nadg_pull_hello", {
            "p_capabilities": list(capabilities), "p_max_concurrency": max_concurrency,
            "p_version": version}))

    def claim(self, max_count: int, lease_s: float, kinds: Sequence[str] | None = None,
              wait_s: float = 0.0) -> list[Lease]:
        """Lease up to ``max_count`` claimable subtasks, waiting up to ``wait_s`` for one."""
        rows = self._rpc("nadg_pull_claim", {
            "p_max": max_count, "p_lease_s": lease_s,
            "p_kinds": list(kinds) if kinds is not None else None,
            "p_wait_s": min(max(wait_s, 0.0), float(MAX_WAIT_S))}) or []
        return [Lease(subtask_id=r["id"], task_id=r["task_id"], kind=r["kind"],
                      payload=dict(js(r["payload"]) or {}),
                      expires_at=ts(r["lease_expires_at"])) for r in rows]

    def extend(self, subtask_ids: Sequence[str], lease_s: float) -> list[str]:
        """Extend this worker's leases; returns the ids it still holds."""
        return scalars(self._rpc("nadg_pull_extend", {"p_ids": list(subtask_ids),
                                                       "p_lease_s": lease_s}))

    def complete(self, subtask_id: str, status: str, result: dict[str, Any] | None,
                 error: str | None) -> bool:
        """Record the outcome of a subtask this worker holds (first completed wins)."""
        return bool(self._rpc("nadg_pull_complete", {
            "p_id": subtask_id, "p_status": status, "p_result": result, "p_error": error}))

    def wait_for_work(self, timeout_s: float) -> bool:
        """Nothing to wait on here: :meth:`claim` long-polls."""
        return False

    def close(self) -> None:
        """Close the HTTP session."""
        try:
            self._client.postgrest.session.close()
        except (AttributeError, RuntimeError):
            pass
