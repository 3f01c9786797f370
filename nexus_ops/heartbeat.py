"""``python -m scripts.heartbeat``: ping every registered worker once and update the registry.

Run by the GitHub Actions cron (.github/workflows/heartbeat.yml) and by hand. Prints a
table; appends a Markdown summary to ``$GITHUB_STEP_SUMMARY`` when that is set. Exit 0 when
the registry was updated (whatever the workers said), 1 when some outcomes could not be
written, 2 when the registry itself could not be reached. Settings: the store's variables
(SUPABASE_URL + SUPABASE_SERVICE_KEY, DATABASE_URL or NADG_REGISTRY) and
NADG_HEARTBEAT_TIMEOUT_S, NADG_HEARTBEAT_CONCURRENCY, NADG_HEARTBEAT_RETRIES,
NADG_HEARTBEAT_RETRY_DELAY_S.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from database.config import open_store
from database.health import HeartbeatReport, HeartbeatSettings, ping_workers
from database.store import StoreError
from database.tables import PING_HEADERS, ping_rows, render_markdown, render_text

logger = logging.getLogger(__name__)

EXIT_PARTIAL, EXIT_UNAVAILABLE = 1, 2


def summary_markdown(report: HeartbeatReport, backend: str) -> str:
    """The Markdown written to the GitHub step summary."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    head = (f"### NEXUS Grid heartbeat, {when}\n\n{report.alive}/{len(report.outcomes)}"
            f" workers answered; {report.recorded} outcomes recorded in the {backend}"
            f" registry ({report.duration_s:.1f}s).\n\n")
    if not report.outcomes:
        return head + "No workers are registered.\n"
    return head + render_markdown(PING_HEADERS, ping_rows(report)) + "\n"


def write_summary(text: str) -> None:
    """Append ``text`` to ``$GITHUB_STEP_SUMMARY`` when it is set."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if target:
        with Path(target).open("a", encoding="utf-8") as fh:
            fh.write(text + "\n")


def main() -> int:
    """Run one heartbeat; returns the exit code."""
    logging.basicConfig(level=os.environ.get("NADG_LOG_LEVEL", "WARNING").upper(),
                        format="%(levelname)s %(name)s: %(message)s")
    settings = HeartbeatSettings()
    try:
        store = open_store()
    except StoreError as exc:
        print(f"error: registry unavailable: {exc}", file=sys.stderr)
        write_summary(f"### NEXUS Grid heartbeat\n\nRegistry unavailable: {exc}\n")
        return EXIT_UNAVAILABLE
    try:
        report = asyncio.run(ping_workers(store, settings=settings))
    except StoreError as exc:
        print(f"error: could not read the workers from the registry: {exc}", file=sys.stderr)
        write_summary(f"### NEXUS Grid heartbeat\n\nRegistry unavailable: {exc}\n")
        return EXIT_UNAVAILABLE
    finally:
        store.close()
    if report.outcomes:
        print(render_text(PING_HEADERS, ping_rows(report)))
    print(f"{report.alive}/{len(report.outcomes)} workers answered; {report.recorded}"
          f" outcomes recorded ({store.backend_name}, {report.duration_s:.1f}s,"
          f" at most {report.peak_in_flight} pings in flight)")
    write_summary(summary_markdown(report, store.backend_name))
    return 0 if report.recorded == len(report.outcomes) else EXIT_PARTIAL


if __name__ == "__main__":
    sys.exit(main())
