"""The registry CLI: ``python -m database.manage_workers`` (the original NADG verbs).

    list [--json]                                  registered workers
    add URL [--name N] [--max-concurrency K]       register a worker
    remove ID                                      forget a worker
    status ID STATUS                               set active|busy|offline|draining
    ping [ID]                                      GET /health now and record the result
    enroll NAME                                    issue a pull worker's credential (1 line)
    revoke NAME                                    end a pull worker's credential now

Also ``nexus workers …``. Bad input prints one line on stderr saying what is wrong and what
to do, exits non-zero and writes nothing. Exit codes (:class:`nexus_common.cli.ExitCode`):
0 ok, 1 refused (unknown id, duplicate URL), 2 bad usage or input, 3 registry unreachable.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime
from enum import Enum
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from database.config import open_store
from database.leases import (
    CredentialNotFound,
    DuplicateCredential,
    LeaseStore,
    check_name,
    lease_store,
)
from database.models import WorkerNode, WorkerStatus
from database.store import (
    DuplicateWorker,
    Store,
    StoreConfigError,
    StoreError,
    StoreUnavailable,
    WorkerNotFound,
)
from nexus_common.cli import CliError, ExitCode, UsageError, new_app, run_app
from nexus_ops.tables import PING_HEADERS, WORKER_HEADERS, ping_rows, render_text, worker_rows

logger = logging.getLogger(__name__)

PROG = "python -m database.manage_workers"
STATUSES = ", ".join(s.value for s in WorkerStatus)

app = new_app("Manage the NEXUS Grid worker registry.")


def parse_id(text: str) -> int:
    """A worker id, or UsageError."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise UsageError(f"worker id must be a positive integer, got {text!r}; see the ids"
                         f" with `{PROG} list`")
    return value


def parse_status(text: str) -> WorkerStatus:
    """A worker status, or UsageError."""
    try:
        return WorkerStatus(text.strip().lower())
    except ValueError:
        raise UsageError(f"unknown status {text!r}; use one of: {STATUSES}") from None


def parse_url(text: str) -> str:
    """An http(s) worker URL, or UsageError."""
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        raise UsageError(f"not an http(s) URL: {text!r}; give the worker's base URL, e.g."
                         " https://user-nadg-worker.hf.space or http://127.0.0.1:7860")
    return text.strip().rstrip("/")


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value


def worker_json(worker: WorkerNode) -> dict[str, Any]:
    """A worker as a JSON object."""
    return {k: _jsonable(v) for k, v in asdict(worker).items()}


@contextmanager
def registry() -> Iterator[Store]:
    """The configured store; its failures become the CLI's exit codes."""
    try:
        store = open_store()
    except StoreConfigError as exc:  # a bad or half-set setting: bad input, like every CLI
        raise CliError(str(exc), ExitCode.USAGE) from None
    except StoreError as exc:
        raise CliError(f"registry unavailable: {exc}", ExitCode.UNAVAILABLE) from None
    try:
        yield store
    except StoreUnavailable as exc:
        raise CliError(f"registry unavailable: {exc}", ExitCode.UNAVAILABLE) from None
    except (WorkerNotFound, DuplicateWorker, StoreError) as exc:
        raise CliError(str(exc), ExitCode.FAILED) from None
    finally:
        store.close()


def echo(text: str) -> None:
    """One result line on stdout."""
    typer.echo(text)


@app.command("list")
def list_workers(as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
                 ) -> None:
    """List registered workers."""
    with registry() as store:
        workers = store.list_workers()
    if as_json:
        echo(json.dumps([worker_json(w) for w in workers], indent=2))
    elif workers:
        echo(render_text(WORKER_HEADERS, worker_rows(workers)))
    else:
        echo(f"no workers registered; add one with `{PROG} add URL`")


@app.command()
def add(url: Annotated[str, typer.Argument(help="the worker's base URL")],
        name: Annotated[str | None, typer.Option(help="a display name")] = None,
        max_concurrency: Annotated[int, typer.Option(
            "--max-concurrency", metavar="K", help="subtasks in flight at most")] = 4) -> None:
    """Register a worker by URL."""
    url = parse_url(url)
    if max_concurrency < 1:
        raise UsageError(f"--max-concurrency must be at least 1, got {max_concurrency}")
    with registry() as store:
        w = store.add_worker(url, name=name, max_concurrency=max_concurrency)
    echo(f"added worker {w.id}: {w.vm_url} ({w.status.value})")


@app.command()
def remove(worker_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Remove a worker by id."""
    wid = parse_id(worker_id)
    with registry() as store:
        store.remove_worker(wid)
    echo(f"removed worker {wid}")


@app.command("status")
def set_status(worker_id: Annotated[str, typer.Argument(metavar="ID")],
               status: Annotated[str, typer.Argument(metavar="STATUS", help=STATUSES)],
               ) -> None:
    """Set a worker's status (active, busy, offline, draining)."""
    wid, value = parse_id(worker_id), parse_status(status)
    with registry() as store:
        w = store.set_worker_status(wid, value)
    echo(f"worker {w.id} ({w.vm_url}) is now {w.status.value}")


@app.command()
def ping(worker_id: Annotated[str | None, typer.Argument(metavar="[ID]")] = None) -> None:
    """Ping one worker (or all) now and record the outcome."""
    wid = parse_id(worker_id) if worker_id is not None else None
    from nexus_ops.health import HeartbeatSettings, ping_workers  # httpx only when pinging

    with registry() as store:
        targets = [store.get_worker(wid)] if wid is not None else store.list_workers()
        if not targets:
            echo("no workers registered; nothing to ping")
            return
        report = asyncio.run(ping_workers(store, targets, settings=HeartbeatSettings()))
    echo(render_text(PING_HEADERS, ping_rows(report)))
    if report.recorded != len(report.outcomes):
        raise typer.Exit(ExitCode.FAILED)


def _leases(store: Store) -> LeaseStore:
    """The store's lease operations, or a CliError on a backend without pull workers."""
    found = lease_store(store)
    if found is None:
        raise CliError(f"pull workers need a shared store: set DATABASE_URL (Postgres) or"
                       f" SUPABASE_URL + SUPABASE_SERVICE_KEY; the {store.backend_name}"
                       " registry has no credentials", ExitCode.FAILED)
    return found


@app.command()
def enroll(name: Annotated[str, typer.Argument(help="the pull worker's name")]) -> None:
    """Issue one pull worker's credential: prints it as the only line on stdout (the store
    keeps only its SHA-256; set it as NADG_WORKER_CREDENTIAL where the worker runs)."""
    try:
        check_name(name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    with registry() as store:
        try:
            credential = _leases(store).enroll(name)
        except DuplicateCredential as exc:
            raise CliError(str(exc), ExitCode.FAILED) from None
    echo(credential)


@app.command()
def revoke(name: Annotated[str, typer.Argument(help="the pull worker's name")]) -> None:
    """End a pull worker's credential now: its next call is refused and its leases go
    back to the queue."""
    with registry() as store:
        try:
            _leases(store).revoke(name)
        except CredentialNotFound as exc:
            raise CliError(str(exc), ExitCode.FAILED) from None
    echo(f"revoked the credential of pull worker {name}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run_app(app, argv, prog_name=PROG)



if __name__ == "__main__":
    raise SystemExit(main())
