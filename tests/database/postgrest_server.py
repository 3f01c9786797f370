"""A small local server that speaks the subset of the PostgREST HTTP API supabase-py uses,
over a real Postgres database. It lets the Supabase backend run its contract tests here,
where Supabase's cloud cannot be reached.

Covered (PostgREST v12 behaviour, as supabase-py/postgrest-py sends it):

* ``/rest/v1/{table}`` for tables of the DSN's ``search_path``; ``apikey`` and
  ``Authorization: Bearer`` must both carry the service key (else 401, like Supabase's
  gateway). Unknown table: 404 with code ``PGRST205``; unknown column: 400 ``42703``.
* ``GET``: ``select=`` with ``*`` or a comma list of plain columns (no embedding, no
  renames, no casts); filters ``col=op.value`` with ops ``eq, neq, lt, lte, gt, gte, in
  (a,b,"c"), is (null|true|false)``; ``order=col[.asc|.desc][.nullsfirst|.nullslast],...``;
  ``limit`` and ``offset`` query parameters and the ``Range: a-b`` header; a hard cap of
  ``max_rows`` rows per response (1,000 by default, like Supabase's; set it with
  ``create_app(max_rows=...)`` or at run time through ``app.state.max_rows``, as a project
  owner sets PostgREST's ``max-rows``); ``Content-Range:
  a-b/*`` (or ``/N`` with ``Prefer: count=exact``); ``Accept:
  application/vnd.pgrst.object+json`` for a single object (406 otherwise).
* ``POST`` (insert): a JSON object or array; ``Prefer: return=representation|minimal``
  (201, body only with representation); upsert with ``Prefer:
  resolution=merge-duplicates|ignore-duplicates`` and ``on_conflict=cols``.
* ``PATCH`` (update) and ``DELETE`` with the same filters; ``return=representation``
  returns the changed rows (200), ``minimal`` returns 204.
* ``POST /rest/v1/rpc/{function}`` with named arguments in a JSON object; arguments are
  cast to the function's declared types; a set-returning function answers a JSON array,
  a scalar one its value. Each request runs in one transaction, so an RPC is atomic.
* Errors as PostgREST sends them: ``{"code", "message", "details", "hint"}`` with the
  SQLSTATE as code; 409 for unique/foreign-key violations, 400 for others.

Rows are serialised by Postgres itself (``json_agg``), so timestamps and JSON columns
look exactly as PostgREST returns them. Not covered: embedding, ``or``/``and``/``not``
filters, full-text search, ``columns=``, CSV, HEAD, GET RPC, JWT roles and RLS policies
(the service key bypasses RLS on Supabase anyway).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

MAX_ROWS = 1000
RESERVED = {"select", "order", "limit", "offset", "on_conflict", "columns"}
IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
OPS = {"eq": "=", "neq": "<>", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
#: The database role a request runs as: None (the connection's own user, as the service
#: key bypasses RLS) or the anon role for a request with the anon key.
_ROLE: ContextVar[str | None] = ContextVar("_ROLE", default=None)


class ApiError(Exception):
    """An error answered as PostgREST answers it."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Stats:
    """What the server saw, for tests to assert on (e.g. pagination requests)."""

    requests: list[tuple[str, str, str]] = field(default_factory=list)


def _prefer(request: Request) -> set[str]:
    return {p.strip() for p in request.headers.get("prefer", "").split(",") if p.strip()}


def _ident(name: str) -> str:
    if not IDENT.match(name):
        raise ApiError(400, "PGRST100", f"invalid identifier {name!r}")
    return name


class _Db:
    def __init__(self, dsn: str) -> None:
        self.pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            dsn, min_size=1, max_size=8, open=True,
            kwargs={"autocommit": False, "prepare_threshold": None})

    @contextmanager
    def tx(self) -> Iterator[psycopg.Connection[Any]]:
        with self.pool.connection() as conn, conn.transaction():
            role = _ROLE.get()
            if role is not None:  # like PostgREST: SET LOCAL ROLE to the key's role
                conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
            yield conn

    def columns(self, conn: psycopg.Connection[Any], table: str) -> dict[str, str]:
        rows = conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
            " WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped",
            (table,)).fetchall()
        if not rows:
            raise ApiError(404, "PGRST205",
                           f"Could not find the table '{table}' in the schema cache")
        return {r[0]: r[1] for r in rows}


def _value(typ: str, raw: Any) -> sql.Composable:
    """A parameter cast to the column's type (JSON columns get Jsonb)."""
    if typ in ("json", "jsonb"):
        return sql.Literal(None) if raw is None else sql.SQL("{}::jsonb").format(
            sql.Literal(Jsonb(raw)))
    if raw is None:
        return sql.SQL("NULL")
    return sql.SQL("{}::{}").format(sql.Literal(raw), sql.SQL(typ))


def _split_in(text: str) -> list[str]:
    inner = text[1:-1] if text.startswith("(") and text.endswith(")") else text
    items: list[str] = []
    for m in re.finditer(r'"((?:[^"\\]|\\.)*)"|([^,]+)', inner):
        items.append(m.group(1) if m.group(1) is not None else m.group(2).strip())
    return items


def _where(request: Request, cols: dict[str, str]) -> sql.Composable:
    parts: list[sql.Composable] = []
    for key, raw in request.query_params.multi_items():
        if key in RESERVED:
            continue
        if key not in cols:
            raise ApiError(400, "42703", f"column {key} does not exist")
        op, _, value = raw.partition(".")
        col, typ = sql.Identifier(key), cols[key]
        if op in OPS:
            parts.append(sql.SQL("{} {} {}").format(col, sql.SQL(OPS[op]), _value(typ, value)))
        elif op == "in":
            values = _split_in(value)
            parts.append(sql.SQL("{} = ANY({}::{}[])").format(col, sql.Literal(values),
                                                              sql.SQL(typ)))
        elif op == "is" and value in ("null", "true", "false"):
            parts.append(sql.SQL("{} IS {}").format(col, sql.SQL(value.upper())))
        else:
            raise ApiError(400, "PGRST100", f"unsupported filter {key}={raw}")
    if not parts:
        return sql.SQL("")
    return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(parts)


def _select_list(request: Request, cols: dict[str, str]) -> sql.Composable:
    wanted = request.query_params.get("select", "*")
    if wanted.strip() == "*":
        return sql.SQL("*")
    names = [c.strip() for c in wanted.split(",") if c.strip()]
    for name in names:
        if name not in cols:
            raise ApiError(400, "42703", f"column {name} does not exist")
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def _order(request: Request, cols: dict[str, str]) -> sql.Composable:
    spec = request.query_params.get("order")
    if not spec:
        return sql.SQL("")
    parts: list[sql.Composable] = []
    for item in spec.split(","):
        name, *mods = item.split(".")
        if name not in cols:
            raise ApiError(400, "42703", f"column {name} does not exist")
        text = " ".join({"asc": "ASC", "desc": "DESC", "nullsfirst": "NULLS FIRST",
                         "nullslast": "NULLS LAST"}[m] for m in mods)
        parts.append(sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(text)))
    return sql.SQL(" ORDER BY ") + sql.SQL(", ").join(parts)


def _window(request: Request, cap: int) -> tuple[int, int]:
    offset = int(request.query_params.get("offset", 0))
    limit: int | None = None
    if "limit" in request.query_params:
        limit = int(request.query_params["limit"])
    rng = request.headers.get("range")
    if rng and re.match(r"^\d+-\d*$", rng):
        start, _, end = rng.partition("-")
        offset = int(start)
        if end:
            limit = int(end) - offset + 1
    limit = cap if limit is None else min(limit, cap)
    return offset, limit


def _agg(body: sql.Composable, select: sql.Composable) -> sql.Composable:
    return sql.SQL("WITH _s AS ({}) SELECT coalesce(json_agg(_r), '[]'::json)"
                   " FROM (SELECT {} FROM _s) _r").format(body, select)


def _answer(request: Request, rows: list[Any], status: int, content_range: str) -> Response:
    headers = {"Content-Range": content_range}
    if request.headers.get("accept", "").startswith("application/vnd.pgrst.object+json"):
        if len(rows) != 1:
            raise ApiError(406, "PGRST116",
                           f"JSON object requested, multiple (or no) rows returned: {len(rows)}")
        return JSONResponse(rows[0], status_code=status, headers=headers)
    return JSONResponse(rows, status_code=status, headers=headers)


def create_app(dsn: str, *, service_key: str, max_rows: int = MAX_ROWS,
               anon_key: str | None = None, anon_role: str = "anon") -> Starlette:
    """The PostgREST-speaking ASGI app over the database at ``dsn``.

    With ``anon_key``, a request carrying it (as ``apikey`` and bearer) runs as
    ``anon_role`` (``SET LOCAL ROLE``), so grants and RLS decide what it may do, as on
    Supabase; the service key runs as the DSN's user.
    """
    db = _Db(dsn)
    stats = Stats()

    def guard(request: Request) -> None:
        stats.requests.append((request.method, request.url.path, str(request.query_params)))
        key = request.headers.get("apikey")
        if key is None or request.headers.get("authorization") != f"Bearer {key}":
            raise ApiError(401, "PGRST301", "missing or wrong API key")
        if key == service_key:
            _ROLE.set(None)
        elif anon_key is not None and key == anon_key:
            _ROLE.set(anon_role)
        else:
            raise ApiError(401, "PGRST301", "missing or wrong API key")

    def read(request: Request, table: str) -> Response:
        with db.tx() as conn:
            cols = db.columns(conn, table)
            where = _where(request, cols)
            offset, limit = _window(request, int(app.state.max_rows))
            base = sql.SQL("SELECT * FROM {}{}{} LIMIT {} OFFSET {}").format(
                sql.Identifier(table), where, _order(request, cols), sql.Literal(limit),
                sql.Literal(offset))
            rows = conn.execute(_agg(base, _select_list(request, cols))).fetchone()[0]
            total = "*"
            if "count=exact" in _prefer(request):
                total = str(conn.execute(sql.SQL("SELECT count(*) FROM {}{}").format(
                    sql.Identifier(table), where)).fetchone()[0])
        rng = f"{offset}-{offset + len(rows) - 1}/{total}" if rows else f"*/{total}"
        return _answer(request, rows, 200, rng)

    def insert(request: Request, table: str, body: Any) -> Response:
        items = body if isinstance(body, list) else [body]
        prefer = _prefer(request)
        with db.tx() as conn:
            cols = db.columns(conn, table)
            names = sorted({k for item in items for k in item})
            for n in names:
                if n not in cols:
                    raise ApiError(400, "PGRST204", f"Could not find the '{n}' column")
            values = sql.SQL(", ").join(
                sql.SQL("({})").format(sql.SQL(", ").join(
                    _value(cols[n], item[n]) if n in item else sql.SQL("DEFAULT")
                    for n in names))
                for item in items)
            stmt = sql.SQL("INSERT INTO {} ({}) VALUES {}").format(
                sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, names)), values)
            conflict = request.query_params.get("on_conflict")
            if "resolution=merge-duplicates" in prefer or "resolution=ignore-duplicates" in prefer:
                if not conflict:
                    raise ApiError(400, "PGRST100", "upsert needs on_conflict here")
                target = sql.SQL(", ").join(sql.Identifier(_ident(c.strip()))
                                            for c in conflict.split(","))
                if "resolution=ignore-duplicates" in prefer:
                    stmt += sql.SQL(" ON CONFLICT ({}) DO NOTHING").format(target)
                else:
                    stmt += sql.SQL(" ON CONFLICT ({}) DO UPDATE SET {}").format(
                        target, sql.SQL(", ").join(
                            sql.SQL("{0} = excluded.{0}").format(sql.Identifier(n))
                            for n in names))
            stmt += sql.SQL(" RETURNING *")
            rows = conn.execute(_agg(stmt, _select_list(request, cols))).fetchone()[0]
        if "return=representation" not in prefer:
            return Response(status_code=201)
        return _answer(request, rows, 201, f"*/{len(rows)}")

    def change(request: Request, table: str, body: Any) -> Response:
        with db.tx() as conn:
            cols = db.columns(conn, table)
            where = _where(request, cols)
            if request.method == "PATCH":
                if not isinstance(body, dict) or not body:
                    raise ApiError(400, "PGRST102", "PATCH needs a JSON object")
                for n in body:
                    if n not in cols:
                        raise ApiError(400, "PGRST204", f"Could not find the '{n}' column")
                stmt = sql.SQL("UPDATE {} SET {}{} RETURNING *").format(
                    sql.Identifier(table), sql.SQL(", ").join(
                        sql.SQL("{} = {}").format(sql.Identifier(n), _value(cols[n], v))
                        for n, v in body.items()), where)
            else:
                stmt = sql.SQL("DELETE FROM {}{} RETURNING *").format(sql.Identifier(table),
                                                                      where)
            rows = conn.execute(_agg(stmt, _select_list(request, cols))).fetchone()[0]
        if "return=representation" not in _prefer(request):
            return Response(status_code=204)
        return _answer(request, rows, 200, f"*/{len(rows)}")

    def rpc(request: Request, fn: str, body: Any) -> Response:
        if not isinstance(body, dict):
            raise ApiError(400, "PGRST102", "RPC arguments must be a JSON object")
        with db.tx() as conn:
            found = conn.execute(
                "SELECT p.proretset, p.proargnames, "
                " array(SELECT format_type(t, NULL) FROM unnest(p.proargtypes) t)"
                " FROM pg_proc p WHERE p.proname = %s"
                " AND p.pronamespace::regnamespace::text = ANY(current_schemas(false))",
                (_ident(fn),)).fetchone()
            if found is None:
                raise ApiError(404, "PGRST202", f"Could not find the function {fn}")
            retset, argnames, argtypes = found
            types = dict(zip(argnames or [], argtypes, strict=False))
            for name in body:
                if name not in types:
                    raise ApiError(404, "PGRST202", f"{fn} has no argument {name}")
            args = sql.SQL(", ").join(
                sql.SQL("{} => {}").format(sql.Identifier(n), _value(types[n], v))
                for n, v in body.items())
            call = sql.SQL("SELECT * FROM {}({})").format(sql.Identifier(fn), args)
            if retset:
                result: Any = conn.execute(_agg(call, sql.SQL("*"))).fetchone()[0]
            else:
                result = conn.execute(sql.SQL("SELECT to_json({}({}))").format(
                    sql.Identifier(fn), args)).fetchone()[0]
        return JSONResponse(result)

    async def handle(request: Request) -> Response:
        try:
            guard(request)
            target = request.path_params["target"]
            body = json.loads(await request.body() or b"null")
            if target.startswith("rpc/"):
                if request.method != "POST":
                    raise ApiError(405, "PGRST117", "only POST RPC is supported here")
                return await _run(rpc, request, _ident(target[4:]), body)
            table = _ident(target)
            if request.method == "GET":
                return await _run(read, request, table)
            if request.method == "POST":
                return await _run(insert, request, table, body)
            return await _run(change, request, table, body)
        except ApiError as exc:
            return _error(exc.status, exc.code, exc.message)
        except psycopg.Error as exc:
            state = exc.sqlstate or "XX000"
            status = {"23505": 409, "23503": 409, "42501": 403, "28000": 403}.get(state, 400)
            return _error(status, state, str(exc).splitlines()[0])

    app = Starlette(routes=[
        Route("/", lambda request: JSONResponse({"ok": True})),
        Route("/rest/v1/{target:path}", handle,
              methods=["GET", "POST", "PATCH", "DELETE"]),
    ], lifespan=_lifespan(db))
    app.state.stats = stats
    app.state.max_rows = max_rows
    return app


def _lifespan(db: _Db) -> Any:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        db.pool.close()

    return lifespan


async def _run(fn: Any, *args: Any) -> Response:
    from starlette.concurrency import run_in_threadpool

    result: Response = await run_in_threadpool(fn, *args)
    return result


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message, "details": None, "hint": None},
                        status_code=status)
