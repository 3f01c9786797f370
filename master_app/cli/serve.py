"""``python -m master_app serve``: a master that stays up and adopts unfinished tasks.

Several masters may serve one Postgres or Supabase store: each task runs on one master at
a time (a task lease, renewed while it runs), and when a master dies, another one adopts
its tasks once the lease (``NADG_TASK_LEASE_S``, 30 s) has expired — no manual ``resume``.
"""

from __future__ import annotations

import asyncio
import signal
from contextlib import ExitStack
from typing import Annotated

import typer

from master_app.cli.common import load_settings, one_line_errors, setup_logging
from master_app.service import GridService
from master_app.service.stores import open_configured_store
from nexus_common.cli import ExitCode


def serve(poll_s: Annotated[float, typer.Option(
        "--poll-s", min=0.05, help="how often to look for tasks to adopt (seconds)")] = 1.0,
          ) -> None:
    """Stay up; adopt and run tasks no live master holds (Ctrl-C stops)."""
    setup_logging()
    with one_line_errors():
        code = _serve(poll_s)
    raise typer.Exit(code)


def _serve(poll_s: float) -> int:
    settings = load_settings()
    with ExitStack() as stack:
        store = open_configured_store()
        stack.callback(store.close)
        service = GridService(store, settings)

        async def go() -> int:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            return await service.serve(stop, poll_s=poll_s)

        asyncio.run(go())
    return ExitCode.OK
