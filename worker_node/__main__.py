"""``python -m worker_node pull``: an outbound-only worker that leases work from the store.

A push worker is served by uvicorn (``uvicorn worker_node.main:app``); a pull worker needs
no port: it dials the store with ``NADG_WORKER_CREDENTIAL`` (see :mod:`worker_node.pull`).
Also ``nexus pull``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated

import typer

from nexus_common.cli import new_app, run_app

PROG = "python -m worker_node"
app = new_app("NEXUS Grid worker commands.")


def _positive(value: float) -> float:
    if value <= 0:
        raise typer.BadParameter("must be positive")
    return value


@app.command()
def pull(lease_s: Annotated[float, typer.Option(
             callback=_positive, help="lease length in seconds, extended while a subtask runs")
         ] = 30.0,
         timeout_s: Annotated[float, typer.Option(
             callback=_positive, help="deadline of one pulled subtask in seconds")] = 300.0,
         idle_poll_s: Annotated[float, typer.Option(
             callback=_positive, help="an idle worker looks for work at least this often")
         ] = 5.0,
         long_poll_s: Annotated[float, typer.Option(
             callback=_positive, help="on Supabase, how long one claim waits for work")
         ] = 10.0) -> None:
    """Lease work from the store (outbound connections only)."""
    from worker_node.pull import PullOptions, serve

    code = serve(PullOptions(lease_s=lease_s, timeout_s=timeout_s, idle_poll_s=idle_poll_s,
                             long_poll_s=long_poll_s))
    if code:
        raise typer.Exit(code)


@app.callback()
def _commands() -> None:
    """NEXUS Grid worker commands (a push worker runs under uvicorn instead)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run it; returns the exit code."""
    return run_app(app, argv, prog_name=PROG)


if __name__ == "__main__":
    sys.exit(main())
