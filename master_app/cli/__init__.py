"""``python -m master_app``: the master, headless (typer).

    python -m master_app [-v] run "COMMAND" [--data FILE] [--planner gemini|local]
                                  [--local N] [--json] [--out FILE] [--no-progress]
                                  [--save-plan FILE [--plan-only]] [--plan FILE]
    python -m master_app [-v] resume [--json] [--no-progress]
    python -m master_app [-v] serve [--poll-s S]
    python -m master_app [-v] train --data CSV --label-column COL [...]

:data:`app` is the typer application (the ``nexus`` console script mounts it);
:func:`main` runs it for ``python -m master_app`` and returns the exit status
(:class:`nexus_common.cli.ExitCode`, shared by every NEXUS command line). Every command
is a thin layer over :mod:`master_app.service`. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import typer

from master_app.cli.common import setup_logging
from master_app.cli.password import hash_password_command
from master_app.cli.run import resume, run
from master_app.cli.serve import serve
from master_app.cli.train import train
from nexus_common.cli import new_app, run_app

PROG = "python -m master_app"

app = new_app("NEXUS Grid master, headless.")
app.command(help="Plan and run one job.")(run)
app.command(help="Finish tasks a stopped master left unfinished.")(resume)
app.command(help="Stay up; adopt tasks no live master holds (several masters, one store).")(
    serve)
app.command(help="Federated training of a classifier over the workers.")(train)
app.command("hash-password", help="Print a login hash for NADG_UI_PASSWORD_HASH.")(
    hash_password_command)


@app.callback()
def _options(verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="log to stderr")] = False) -> None:
    """NEXUS Grid master, headless."""
    setup_logging(verbose)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit status (a command line that does not parse is one
    ``error:`` line and 2)."""
    return run_app(app, argv, prog_name=PROG)


__all__ = ["app", "main"]
