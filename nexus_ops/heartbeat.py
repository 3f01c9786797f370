"""One heartbeat: ping every registered worker once and update the registry.

``python -m scripts.heartbeat`` or ``nexus heartbeat``; run by the GitHub Actions cron
(.github/workflows/heartbeat.yml) and by hand. Prints a table; appends a Markdown summary
to ``$GITHUB_STEP_SUMMARY`` when that is set. Exit 0 when the registry was updated
(whatever the workers said), 1 when some outcomes could not be written, 3 when the registry
itself could not be reached (:class:`nexus_common.cli.ExitCode`); under GitHub Actions it
refuses (3) to run on a local SQLite registry. Settings: the store's variables
(SUPABASE_URL + SUPABASE_SERVICE_KEY, DATABASE_URL or NADG_REGISTRY) and
NADG_HEARTBEAT_TIMEOUT_S, NADG_HEARTBEAT_CONCURRENCY, NADG_HEARTBEAT_RETRIES,
NADG_HEARTBEAT_RETRY_DELAY_S, NADG_HEARTBEAT_DEADLINE_S (the pings of one run end by then,
whatever the workers do). A worker going offline or coming back is listed in the summary
and posted to ``NADG_ALERT_WEBHOOK_URL`` when set (:mod:`nexus_ops.alerts`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import typer
from pydantic import ValidationError

from database.config import StoreSettings, open_store
from database.store import StoreConfigError, StoreError
from nexus_common.cli import CliError, ExitCode, new_app, run_app
from nexus_ops.alerts import (
    AlertSettings,
    Change,
    Transition,
    alert_text,
    alerts_markdown,
    post_alert,
    transitions,
)
from nexus_ops.health import HeartbeatReport, HeartbeatSettings, ping_workers
from nexus_ops.tables import PING_HEADERS, ping_rows, render_markdown, render_text

logger = logging.getLogger(__name__)

PROG = "python -m scripts.heartbeat"

app = new_app("Ping every registered worker once and update the registry.")


def summary_markdown(report: HeartbeatReport, backend: str,
                     changes: Sequence[Transition] = (), delivery: str | None = None) -> str:
    """The Markdown written to the GitHub step summary (alerts first, then the table)."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    head = (f"### NEXUS Grid heartbeat, {when}\n\n{report.alive}/{len(report.outcomes)}"
            f" workers answered; {report.recorded} outcomes recorded in the {backend}"
            f" registry ({report.duration_s:.1f}s).\n\n")
    alerts = alerts_markdown(changes, delivery)
    head += alerts + "\n" if alerts else ""
    if not report.outcomes:
        return head + "No workers are registered.\n"
    return head + render_markdown(PING_HEADERS, ping_rows(report)) + "\n"


def write_summary(text: str) -> None:
    """Append ``text`` to ``$GITHUB_STEP_SUMMARY`` when it is set."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if target:
        with Path(target).open("a", encoding="utf-8") as fh:
            fh.write(text + "\n")


def refuse_local_registry_in_ci() -> None:
    """Under GitHub Actions (``GITHUB_ACTIONS=true``) refuse a local SQLite registry.

    The runner's disk is thrown away after the job, so such a registry holds no workers:
    the cron would ping nobody and stay green. A bad or half-set configuration is left to
    :func:`open_store`, which names the variable to fix.
    """
    if os.environ.get("GITHUB_ACTIONS", "").strip().lower() != "true":
        return
    try:
        backend = StoreSettings().backend
    except (ValidationError, StoreError):
        return
    if backend == "sqlite":
        message = ("refusing to run under GitHub Actions on a local SQLite registry: the"
                   " runner's disk is discarded after the job, so no worker would be pinged"
                   " or recorded; set the repository secrets SUPABASE_URL and"
                   " SUPABASE_SERVICE_KEY (or DATABASE_URL)")
        write_summary(f"### NEXUS Grid heartbeat\n\nNot run: {message}.\n")
        raise CliError(message, ExitCode.UNAVAILABLE)


@app.command()
def heartbeat() -> None:
    """Ping every registered worker once, record each outcome, print a table."""
    refuse_local_registry_in_ci()
    settings = HeartbeatSettings()
    try:
        alert_settings = AlertSettings()
    except ValidationError as exc:
        raise CliError("; ".join(str(e["msg"]).removeprefix("Value error, ")
                                 for e in exc.errors()), ExitCode.USAGE) from None
    try:
        store = open_store()
    except StoreConfigError as exc:  # a bad or half-set setting: bad input, like every CLI
        write_summary(f"### NEXUS Grid heartbeat\n\nNot run: {exc}\n")
        raise CliError(str(exc), ExitCode.USAGE) from None
    except StoreError as exc:
        write_summary(f"### NEXUS Grid heartbeat\n\nRegistry unavailable: {exc}\n")
        raise CliError(f"registry unavailable: {exc}", ExitCode.UNAVAILABLE) from None
    try:
        report = asyncio.run(ping_workers(store, settings=settings))
    except StoreError as exc:
        write_summary(f"### NEXUS Grid heartbeat\n\nRegistry unavailable: {exc}\n")
        raise CliError(f"could not read the workers from the registry: {exc}",
                       ExitCode.UNAVAILABLE) from None
    finally:
        store.close()
    if report.outcomes:
        typer.echo(render_text(PING_HEADERS, ping_rows(report)))
    typer.echo(f"{report.alive}/{len(report.outcomes)} workers answered; {report.recorded}"
               f" outcomes recorded ({store.backend_name}, {report.duration_s:.1f}s,"
               f" at most {report.peak_in_flight} pings in flight)")
    changes = transitions(report)
    delivery = _deliver(changes, alert_settings)
    for change in changes:
        went = "went offline" if change.change is Change.OFFLINE else "came back"
        typer.echo(f"alert: worker {change.label} {went}")
    write_summary(summary_markdown(report, store.backend_name, changes, delivery))
    if report.recorded != len(report.outcomes):
        raise typer.Exit(ExitCode.FAILED)


def _deliver(changes: Sequence[Transition], settings: AlertSettings) -> str | None:
    """Post the changes to the webhook, if any; a line for the summary saying how it went."""
    if not changes or settings.webhook_url is None:
        return None
    failure = post_alert(settings.webhook_url, alert_text(changes), settings.timeout_s)
    if failure:
        typer.echo(f"warning: {failure}", err=True)
        return f"Not posted: {failure}."
    return "Posted to the alert webhook."


def main(argv: Sequence[str] | None = None) -> int:
    """Run one heartbeat; returns the exit code."""
    logging.basicConfig(level=os.environ.get("NADG_LOG_LEVEL", "WARNING").upper(),
                        format="%(levelname)s %(name)s: %(message)s")
    return run_app(app, argv, prog_name=PROG)


if __name__ == "__main__":
    raise SystemExit(main())
