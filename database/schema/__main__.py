"""Print the schema in one dialect: ``python -m database.schema --dialect postgres``.

``--check FILE`` compares instead of printing: exit 0 when FILE is the generator's output,
1 (with a one-line hint on stderr) when it has drifted.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from database.schema import DIALECTS, SCHEMA_FILE, render
from nexus_common.cli import CliError, ExitCode, UsageError, new_app, run_app

PROG = "python -m database.schema"
app = new_app("Print the NEXUS Grid store schema.")
app.info.no_args_is_help = False


@app.command()
def schema(dialect: Annotated[str, typer.Option(
               help=f"which SQL dialect to print: {', '.join(DIALECTS)}")] = "postgres",
           check: Annotated[Path | None, typer.Option(
               metavar="FILE", help="exit 1 if FILE differs from the rendering")] = None,
           ) -> None:
    """Print the schema in one dialect, or check a file against it."""
    if dialect not in DIALECTS:
        raise UsageError(f"unknown dialect {dialect!r}; use one of: {', '.join(DIALECTS)}")
    text = render(dialect)
    if check is None:
        sys.stdout.write(text)
        return
    try:
        current = check.read_text("utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {check}: {exc}", ExitCode.FAILED) from None
    if current != text:
        raise CliError(f"{check} differs from the schema definition; regenerate it with"
                       f" `{PROG} --dialect {dialect} > {SCHEMA_FILE}`", ExitCode.FAILED)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments; print or check the rendering; return the exit code."""
    return run_app(app, argv, prog_name=PROG)


if __name__ == "__main__":
    raise SystemExit(main())
