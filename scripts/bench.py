"""The benchmark suite: ``python -m scripts.bench [--json]`` prints one Markdown table.

Each module in :data:`MODULES` offers ``benchmarks() -> list[(benchmark, figure, unit)]``;
a module that is missing or fails is noted in the table and the rest still run.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
import time
from collections.abc import Sequence
from typing import Annotated

import typer

from nexus_common.cli import new_app, run_app

logger = logging.getLogger(__name__)

MODULES = ("scripts.bench_worker", "scripts.bench_sandbox", "scripts.bench_dispatch",
           "scripts.bench_peers", "scripts.bench_scale", "scripts.bench_training",
           "scripts.bench_chaos", "scripts.bench_pull",
           "scripts.bench_watching")

Row = tuple[str, str, str]


def collect(modules: tuple[str, ...] = MODULES) -> tuple[list[Row], list[str]]:
    """Run each module's ``benchmarks()``; returns the rows and notes about skipped ones."""
    rows: list[Row] = []
    notes: list[str] = []
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                notes.append(f"{name}: cannot import ({exc})")
            else:
                notes.append(f"{name}: not present, skipped")
            continue
        start = time.monotonic()
        try:
            found = module.benchmarks()
        except Exception as exc:
            logger.exception("%s failed", name)
            notes.append(f"{name}: failed: {type(exc).__name__}: {exc}")
            continue
        rows.extend((str(a), str(b), str(c)) for a, b, c in found)
        logger.info("%s: %d rows in %.1fs", name, len(found), time.monotonic() - start)
    return rows, notes


def render(rows: list[Row], notes: list[str]) -> str:
    """The Markdown table (and notes below it)."""
    lines = ["| benchmark | figure | unit |", "| --- | ---: | --- |"]
    lines += [f"| {name} | {figure} | {unit} |" for name, figure, unit in rows]
    if notes:
        lines.append("")
        lines += [f"- {note}" for note in notes]
    return "\n".join(lines)


app = new_app("Run the benchmark suite and print one Markdown table.")


@app.command()
def bench(only: Annotated[list[str] | None, typer.Option(
        "--only", help="a module to run, e.g. scripts.bench_dispatch (repeatable)")] = None,
          as_json: Annotated[bool, typer.Option("--json", help="print JSON rows")] = False,
          ) -> None:
    """Run the suite (or ``--only`` some modules) and print the table (or JSON)."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    rows, notes = collect(tuple(only) if only else MODULES)
    if as_json:
        typer.echo(json.dumps({"rows": [{"benchmark": n, "figure": f, "unit": u}
                                        for n, f, u in rows], "notes": notes}, indent=2))
    else:
        typer.echo(render(rows, notes))
    if not rows:
        raise typer.Exit(1)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m scripts.bench``; returns the exit code."""
    return run_app(app, argv, prog_name="python -m scripts.bench")


if __name__ == "__main__":
    raise SystemExit(main())
