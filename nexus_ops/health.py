"""Ping workers' ``GET /health`` concurrently and record the outcome in the registry.

The core of ``python -m scripts.heartbeat`` and ``manage_workers ping``: one shared
``httpx.AsyncClient``, a semaphore bounding how many pings are in flight, a per-request
timeout and one quick retry. Each outcome goes through ``Store.record_ping``, which applies
the liveness rule (offline after 2 failures, active after one good ping, draining stays).
Failures are data: a dead worker is a row in the report, never an exception.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from database.models import WorkerNode, WorkerStatus
from database.store import Store, StoreError

logger = logging.getLogger(__name__)


class HeartbeatSettings(BaseSettings):
    """How the heartbeat pings (environment variables ``NADG_HEARTBEAT_*``)."""

    model_config = SettingsConfigDict(env_prefix="NADG_HEARTBEAT_", extra="ignore")

    timeout_s: float = Field(default=10.0, gt=0, description="per-request timeout")
    concurrency: int = Field(default=16, ge=1, description="pings in flight at most")
    retries: int = Field(default=1, ge=0, description="quick retries after a failed ping")
    retry_delay_s: float = Field(default=0.5, ge=0, description="pause before a retry")


@dataclass(frozen=True, slots=True)
class Probe:
    """What one ``GET /health`` (with its retry) found."""

    ok: bool
    latency_ms: float | None = None
    status_code: int | None = None
    version: str | None = None
    error: str | None = None
    attempts: int = 1


@dataclass(frozen=True, slots=True)
class PingOutcome:
    """One worker's ping: the probe, its status before and after, and any store error."""

    worker: WorkerNode
    probe: Probe
    after: WorkerNode | None = None
    record_error: str | None = None

    @property
    def status_after(self) -> WorkerStatus:
        """The status the registry holds now (the old one if recording failed)."""
        return self.after.status if self.after else self.worker.status


@dataclass
class InFlight:
    """Counts pings in flight; ``peak`` is the most seen at once (observable by tests)."""

    now: int = 0
    peak: int = 0

    def enter(self) -> None:
        """One more ping in flight."""
        self.now += 1
        self.peak = max(self.peak, self.now)

    def leave(self) -> None:
        """One ping done."""
        self.now -= 1


@dataclass
class HeartbeatReport:
    """Every outcome of one heartbeat run, in worker id order."""

    outcomes: list[PingOutcome] = field(default_factory=list)
    peak_in_flight: int = 0
    duration_s: float = 0.0

    @property
    def recorded(self) -> int:
        """How many outcomes reached the registry."""
        return sum(1 for o in self.outcomes if o.record_error is None)

    @property
    def alive(self) -> int:
        """How many workers answered."""
        return sum(1 for o in self.outcomes if o.probe.ok)


def health_url(vm_url: str) -> str:
    """The ``/health`` URL of a worker."""
    return vm_url.rstrip("/") + "/health"


async def probe_once(client: httpx.AsyncClient, vm_url: str, timeout_s: float) -> Probe:
    """One ``GET /health``: ok when HTTP 200 with a JSON status of ``ok`` or ``degraded``."""
    started = time.perf_counter()
    try:
        # httpx's timeout bounds each connect/read/write step, not the request: a worker
        # (or a proxy in front of it) trickling its answer would hold the ping for ever
        async with asyncio.timeout(timeout_s):
            response = await client.get(health_url(vm_url), timeout=timeout_s)
    except (httpx.TimeoutException, TimeoutError):
        return Probe(ok=False, error=f"timed out after {timeout_s:g}s")
    except httpx.HTTPError as exc:
        return Probe(ok=False, error=f"{type(exc).__name__}: {exc}" if str(exc)
                     else type(exc).__name__)
    latency = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        return Probe(ok=False, latency_ms=latency, status_code=response.status_code,
                     error=f"HTTP {response.status_code}")
    try:
        body = response.json()
    except ValueError:
        body = None
    status = body.get("status") if isinstance(body, dict) else None
    if status not in ("ok", "degraded"):
        return Probe(ok=False, latency_ms=latency, status_code=200,
                     error=f"unexpected /health body (status={status!r})")
    version = body.get("version") if isinstance(body, dict) else None
    return Probe(ok=True, latency_ms=latency, status_code=200,
                 version=str(version) if version is not None else None,
                 error=None if status == "ok" else "degraded")


async def probe(client: httpx.AsyncClient, vm_url: str, settings: HeartbeatSettings,
                gate: asyncio.Semaphore, gauge: InFlight) -> Probe:
    """Probe with the quick retries; every attempt holds a slot of ``gate``."""
    result = Probe(ok=False, error="not probed")
    for attempt in range(1, settings.retries + 2):
        async with gate:
            gauge.enter()
            try:
                result = await probe_once(client, vm_url, settings.timeout_s)
            finally:
                gauge.leave()
        if result.ok:
            break
        if attempt <= settings.retries and settings.retry_delay_s:
            await asyncio.sleep(settings.retry_delay_s)
    return Probe(ok=result.ok, latency_ms=result.latency_ms, status_code=result.status_code,
                 version=result.version, error=result.error, attempts=attempt)


async def _ping_and_record(store: Store, worker: WorkerNode, client: httpx.AsyncClient,
                           settings: HeartbeatSettings, gate: asyncio.Semaphore,
                           gauge: InFlight) -> PingOutcome:
    found = await probe(client, worker.vm_url, settings, gate, gauge)
    try:
        after = await asyncio.to_thread(
            store.record_ping, worker.id, ok=found.ok, latency_ms=found.latency_ms,
            version=found.version, error=None if found.ok else found.error)
    except StoreError as exc:
        logger.warning("could not record the ping of worker %s: %s", worker.id, exc)
        return PingOutcome(worker=worker, probe=found, record_error=str(exc))
    return PingOutcome(worker=worker, probe=found, after=after)


async def ping_workers(
    store: Store,
    workers: Sequence[WorkerNode] | None = None,
    *,
    settings: HeartbeatSettings | None = None,
    client: httpx.AsyncClient | None = None,
    gauge: InFlight | None = None,
) -> HeartbeatReport:
    """Ping ``workers`` (default: every registered one) and record each outcome.

    Raises StoreError only when the worker list itself cannot be read; a failed ping or
    a failed write of one outcome is a row of the report.
    """
    settings = settings or HeartbeatSettings()
    gauge = gauge or InFlight()
    started = time.perf_counter()
    if workers is None:
        workers = await asyncio.to_thread(store.list_workers)
    gate = asyncio.Semaphore(settings.concurrency)
    own = client is None
    http = client or httpx.AsyncClient(
        limits=httpx.Limits(max_connections=settings.concurrency,
                            max_keepalive_connections=settings.concurrency),
        follow_redirects=True, headers={"User-Agent": "nadg-heartbeat"})
    try:
        outcomes = await asyncio.gather(
            *(_ping_and_record(store, w, http, settings, gate, gauge) for w in workers))
    finally:
        if own:
            await http.aclose()
    return HeartbeatReport(outcomes=sorted(outcomes, key=lambda o: o.worker.id),
                           peak_in_flight=gauge.peak,
                           duration_s=time.perf_counter() - started)
