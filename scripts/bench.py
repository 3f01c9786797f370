"""The benchmark suite: ``python -m scripts.bench`` prints one Markdown table.

Each module in :data:`MODULES` offers ``benchmarks() -> list[(benchmark, figure, unit)]``;
a module that is missing or fails is noted in the table and the rest still run.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time

logger = logging.getLogger(__name__)

MODULES = ("scripts.bench_worker", "scripts.bench_dispatch", "scripts.bench_training")

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


def main(argv: list[str] | None = None) -> int:
    """Run the suite (or ``--only`` some modules) and print the table."""
    parser = argparse.ArgumentParser(prog="python -m scripts.bench")
    parser.add_argument("--only", nargs="*", help="module names, e.g. scripts.bench_dispatch")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    rows, notes = collect(tuple(args.only) if args.only else MODULES)
    print(render(rows, notes))
    return 0 if rows else 1


if __name__ == "__main__":
    raise SystemExit(main())
