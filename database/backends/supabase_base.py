"""The plumbing under the Supabase Store: the client, error translation, pagination and
compare-and-swap updates the worker, job and model mixins use."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
from postgrest.exceptions import APIError
from supabase import ClientOptions, create_client

from database.backends.messages import schema_outdated
from database.schema import required_columns
from database.store import SchemaOutdated, StoreError, StoreUnavailable

#: Rows asked for per request: PostgREST's default ``max-rows``. A project may set a
#: lower cap; pages are read until one comes back empty, so that never loses rows.
PAGE = 1000
#: Compare-and-swap attempts before giving up on a contended row.
CAS_ATTEMPTS = 50

Row = dict[str, Any]


def iso(value: datetime) -> str:
    """A timestamp as PostgREST receives it (ISO 8601, microseconds)."""
    return value.isoformat(timespec="microseconds")


class ApiFailure(StoreError):
    """PostgREST refused a request (internal; carries the SQLSTATE or PGRST code)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"Supabase refused the request ({code}): {message}")
        self.code, self.message = code, message


#: PostgREST codes and SQLSTATEs meaning a table, column or function of the schema is not
#: there: no table (PGRST205, 42P01), no function (PGRST202, 42883), no column (PGRST204 on
#: a write, 42703 on a read or filter).
SCHEMA_CODES = frozenset({"PGRST205", "42P01", "PGRST202", "42883", "PGRST204", "42703"})


def _down(code: str) -> bool:
    """True for an answer meaning the service is not there, not that the request was
    wrong: an HTTP 5xx without a PostgREST body (a gateway or a paused project), or
    PostgREST's own "cannot reach the database" codes (PGRST000-PGRST003)."""
    if code in ("PGRST000", "PGRST001", "PGRST002", "PGRST003"):
        return True
    return code.isdigit() and 500 <= int(code) <= 599


class SupabaseBase:
    """A supabase-py client and the request helpers every Supabase mixin relies on."""

    backend_name = "supabase"

    def __init__(self, url: str, service_key: str, *, timeout_s: float = 10.0,
                 schema_dsn: str | None = None) -> None:
        self._url = url
        if schema_dsn:
            from database.backends.postgres import PostgresStore

            PostgresStore(schema_dsn, max_size=1, timeout_s=timeout_s).close()
        try:
            self._client = create_client(
                url, service_key, options=ClientOptions(postgrest_client_timeout=timeout_s))
        except Exception as exc:  # supabase-py raises its own plain exceptions here
            raise StoreUnavailable(
                f"cannot create a Supabase client for {url}: {exc}; check SUPABASE_URL and"
                " SUPABASE_SERVICE_KEY"
            ) from exc
        # the probe fails fast: no transient-error retries (those sleep 1, 2, 4 s...); it
        # names every worker_nodes column, so the original NADG table is caught here
        probe = ",".join(required_columns()["worker_nodes"])
        try:
            self._call(lambda: self._t("worker_nodes").select(probe).limit(1).retry(False)
                       .execute())
        except ApiFailure as exc:  # e.g. a 404 page: SUPABASE_URL is not a Supabase project
            raise StoreUnavailable(
                f"Supabase at {url} did not answer like a Supabase project ({exc.code}:"
                f" {exc.message}); check SUPABASE_URL (https://<project>.supabase.co)"
            ) from exc

    def _t(self, table: str) -> Any:
        return self._client.table(table)

    def _call(self, fn: Callable[[], Any]) -> Any:
        """Run one request; translate transport and API errors into StoreErrors."""
        try:
            return fn()
        except httpx.HTTPError as exc:
            raise StoreUnavailable(
                f"cannot reach Supabase at {self._url}: {exc}; check SUPABASE_URL"
            ) from exc
        except APIError as exc:
            code, message = str(exc.code or ""), str(exc.message or exc)
            if code in ("PGRST301", "PGRST302", "401") or "api key" in message.lower():
                raise StoreUnavailable(
                    f"Supabase refused the key: {message}; check SUPABASE_SERVICE_KEY"
                ) from exc
            if code in SCHEMA_CODES:
                raise SchemaOutdated(schema_outdated(
                    f"the Supabase project at {self._url}", f"{code}: {message}")) from exc
            if _down(code):
                raise StoreUnavailable(
                    f"Supabase at {self._url} is not answering ({code}: {message}); a free"
                    " project pauses after 7 days without activity: restore it in the"
                    " Supabase dashboard, or check SUPABASE_URL"
                ) from exc
            raise ApiFailure(code, message) from exc

    def _data(self, fn: Callable[[], Any]) -> list[Row]:
        data = self._call(fn).data
        return list(data or [])

    def _all(self, build: Callable[[], Any], *, start: int = 0,
             limit: int | None = None) -> list[Row]:
        """Every row of an ordered query (at most ``limit``), page by page with ``.range()``.

        A page shorter than asked for does not mean the end: a project whose ``max-rows``
        is below :data:`PAGE` answers every page short. Only an empty page ends the read.
        """
        out: list[Row] = []
        while limit is None or len(out) < limit:
            want = PAGE if limit is None else min(PAGE, limit - len(out))
            lo = start + len(out)
            page = self._data(build().range(lo, lo + want - 1).execute)
            if not page:
                break
            out.extend(page)
        return out

    def _cas(self, table: str, key: str, key_value: Any, read: Callable[[], Row],
             change: Callable[[Row], tuple[Row, dict[str, Any]]]) -> Row:
        """Update ``change(row)`` only if the guarded columns still hold what was read."""
        for _ in range(CAS_ATTEMPTS):
            current = read()
            values, guard = change(current)
            query = self._t(table).update(values).eq(key, key_value)
            for col, val in guard.items():
                query = query.is_(col, "null") if val is None else query.eq(col, val)
            updated = self._data(query.execute)
            if updated:
                return updated[0]
        raise StoreError(f"{table} row {key_value} kept changing under a concurrent writer;"
                         " try again")
