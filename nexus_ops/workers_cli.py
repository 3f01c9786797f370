"""``python -m database.manage_workers``: the registry CLI (the original NADG verbs).

    list [--json]                                  registered workers
    add URL [--name N] [--max-concurrency K]       register a worker
    remove ID                                      forget a worker
    status ID STATUS                               set active|busy|offline|draining
    ping [ID]                                      GET /health now and record the result

Bad input prints one line on stderr saying what is wrong and what to do, exits non-zero
and writes nothing. Exit codes: 0 ok, 1 refused (unknown id, duplicate URL), 2 bad usage
or input, 3 registry unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from enum import Enum
from typing import Any, NoReturn
from urllib.parse import urlsplit

from database.config import open_store
from database.models import WorkerNode, WorkerStatus
from database.store import DuplicateWorker, Store, StoreError, StoreUnavailable, WorkerNotFound
from database.tables import PING_HEADERS, WORKER_HEADERS, ping_rows, render_text, worker_rows

logger = logging.getLogger(__name__)

EXIT_REFUSED, EXIT_USAGE, EXIT_UNAVAILABLE = 1, 2, 3
STATUSES = ", ".join(s.value for s in WorkerStatus)


class UsageError(Exception):
    """Bad command-line input; the message says what to do."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `python -m database.manage_workers --help`)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (one subcommand per verb)."""
    parser = _Parser(prog="python -m database.manage_workers",
                     description="Manage the NEXUS Grid worker registry.")
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    lst = verbs.add_parser("list", help="list registered workers")
    lst.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add = verbs.add_parser("add", help="register a worker by URL")
    add.add_argument("url")
    add.add_argument("--name")
    add.add_argument("--max-concurrency", type=int, default=4, metavar="K")
    rm = verbs.add_parser("remove", help="remove a worker by id")
    rm.add_argument("id")
    st = verbs.add_parser("status", help=f"set a worker's status ({STATUSES})")
    st.add_argument("id")
    st.add_argument("status")
    ping = verbs.add_parser("ping", help="ping one worker (or all) now and record it")
    ping.add_argument("id", nargs="?")
    return parser


def parse_id(text: str) -> int:
    """A worker id, or UsageError."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise UsageError(f"worker id must be a positive integer, got {text!r}; see the ids"
                         " with `python -m database.manage_workers list`")
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


def run(args: argparse.Namespace, store: Store) -> int:
    """Carry out one parsed command against ``store``; returns the exit code."""
    if args.verb == "list":
        workers = store.list_workers()
        if args.json:
            print(json.dumps([worker_json(w) for w in workers], indent=2))
        elif workers:
            print(render_text(WORKER_HEADERS, worker_rows(workers)))
        else:
            print("no workers registered; add one with"
                  " `python -m database.manage_workers add URL`")
        return 0
    if args.verb == "add":
        w = store.add_worker(args.url, name=args.name, max_concurrency=args.max_concurrency)
        print(f"added worker {w.id}: {w.vm_url} ({w.status.value})")
        return 0
    if args.verb == "remove":
        store.remove_worker(args.id)
        print(f"removed worker {args.id}")
        return 0
    if args.verb == "status":
        w = store.set_worker_status(args.id, args.status)
        print(f"worker {w.id} ({w.vm_url}) is now {w.status.value}")
        return 0
    targets = [store.get_worker(args.id)] if args.id is not None else store.list_workers()
    if not targets:
        print("no workers registered; nothing to ping")
        return 0
    from database.health import HeartbeatSettings, ping_workers  # httpx only when pinging

    report = asyncio.run(ping_workers(store, targets, settings=HeartbeatSettings()))
    print(render_text(PING_HEADERS, ping_rows(report)))
    return 0 if report.recorded == len(report.outcomes) else EXIT_REFUSED


def _validate(args: argparse.Namespace) -> None:
    """Check every argument before anything is opened or written."""
    if args.verb == "add":
        args.url = parse_url(args.url)
        if args.max_concurrency < 1:
            raise UsageError(f"--max-concurrency must be at least 1, got {args.max_concurrency}")
    if args.verb in ("remove", "status") or (args.verb == "ping" and args.id is not None):
        args.id = parse_id(args.id)
    if args.verb == "status":
        args.status = parse_status(args.status)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        args = build_parser().parse_args(argv)
        _validate(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        store = open_store()
    except StoreUnavailable as exc:
        print(f"error: registry unavailable: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    try:
        return run(args, store)
    except (WorkerNotFound, DuplicateWorker) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except StoreUnavailable as exc:
        print(f"error: registry unavailable: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main())
