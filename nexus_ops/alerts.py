"""Alerts from the heartbeat: a worker went offline, or came back.

:func:`transitions` reads them off a :class:`~nexus_ops.health.HeartbeatReport` (the
status before the ping against the status the registry holds after it);
:func:`post_alert` sends one message for a run to an optional webhook
(``NADG_ALERT_WEBHOOK_URL``) as ``{"text": ..., "content": ...}``, which both Slack
(``text``) and Discord (``content``) incoming webhooks accept. A webhook that fails is
logged and reported; it never fails the heartbeat. The webhook URL is a secret (it carries
the channel's token): it is never logged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import httpx
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from database.models import LIVE_STATUSES, WorkerNode, WorkerStatus
from nexus_ops.health import HeartbeatReport

logger = logging.getLogger(__name__)

LIVE = LIVE_STATUSES  # the one definition of a live worker (database.models)
#: At most this many workers are named in one message; the rest are counted.
MAX_NAMED = 20


class AlertSettings(BaseSettings):
    """Where alerts go (``NADG_ALERT_WEBHOOK_URL``, ``NADG_ALERT_TIMEOUT_S``)."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    webhook_url: str | None = Field(default=None, validation_alias="NADG_ALERT_WEBHOOK_URL")
    timeout_s: float = Field(default=10.0, gt=0, validation_alias="NADG_ALERT_TIMEOUT_S")

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if not value.startswith(("https://", "http://")):
            raise ValueError("NADG_ALERT_WEBHOOK_URL must be an http(s) URL (a Slack or "
                             "Discord incoming webhook); fix or unset it")
        return value


class Change(StrEnum):
    """Which way a worker went."""

    OFFLINE = "offline"
    BACK = "back"


@dataclass(frozen=True, slots=True)
class Transition:
    """One worker that went offline or came back in this heartbeat."""

    worker: WorkerNode
    change: Change
    error: str | None = None

    @property
    def label(self) -> str:
        """``#id name (url)``."""
        name = f" {self.worker.name}" if self.worker.name else ""
        return f"#{self.worker.id}{name} ({self.worker.vm_url})"


def transitions(report: HeartbeatReport) -> list[Transition]:
    """Workers whose recorded status crossed between live and offline in this run."""
    found = []
    for outcome in report.outcomes:
        if outcome.after is None:
            continue
        before, after = outcome.worker.status, outcome.after.status
        if before in LIVE and after is WorkerStatus.OFFLINE:
            found.append(Transition(outcome.worker, Change.OFFLINE, outcome.probe.error))
        elif before is WorkerStatus.OFFLINE and after in LIVE:
            found.append(Transition(outcome.worker, Change.BACK))
    return found


def alert_text(changes: Sequence[Transition]) -> str:
    """One plain-text message for every change of a run ("" when there is none)."""
    lines = []
    for change, head in ((Change.OFFLINE, ":red_circle: NEXUS Grid: {n} worker(s) went "
                          "offline"), (Change.BACK, ":large_green_circle: NEXUS Grid: {n} "
                                       "worker(s) came back")):
        group = [t for t in changes if t.change is change]
        if not group:
            continue
        lines.append(head.format(n=len(group)))
        for t in group[:MAX_NAMED]:
            lines.append(f"- {t.label}" + (f": {t.error}" if t.error else ""))
        if len(group) > MAX_NAMED:
            lines.append(f"- and {len(group) - MAX_NAMED} more")
    return "\n".join(lines)


def alerts_markdown(changes: Sequence[Transition], delivery: str | None) -> str:
    """The job summary's alerts section (``delivery`` says where the message went)."""
    if not changes:
        return ""
    body = alert_text(changes).replace(":red_circle: ", "").replace(
        ":large_green_circle: ", "")
    tail = f"\n\n_{delivery}_" if delivery else ""
    return f"#### Alerts\n\n{body}{tail}\n"


def post_alert(url: str, text: str, timeout_s: float = 10.0,
               client: httpx.Client | None = None) -> str | None:
    """Post ``text`` to the webhook; returns None when delivered, else why not."""
    payload = {"text": text, "content": text[:2000]}  # Discord caps content at 2,000
    try:
        if client is not None:
            response = client.post(url, json=payload, timeout=timeout_s)
        else:
            response = httpx.post(url, json=payload, timeout=timeout_s)
    except httpx.HTTPError as exc:
        why = f"the alert webhook could not be reached ({type(exc).__name__})"
        logger.warning("%s", why)
        return why
    if response.status_code >= 300:
        why = f"the alert webhook answered HTTP {response.status_code}"
        logger.warning("%s", why)
        return why
    return None
