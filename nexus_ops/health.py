"""Ping workers' ``GET /health`` concurrently and record the outcome in the registry.

The core of ``python -m scripts.heartbeat`` and ``manage_workers ping``: one shared
``httpx.AsyncClient``, a semaphore bounding how many pings are in flight, a per-request
timeout, one quick retry (not after a timeout: that worker already had its full
time), and a deadline for the whole run: whatever the workers do (accept
a connection and never answer, trickle their answer), :func:`ping_workers` returns within
``deadline_s`` plus the registry writes. A ping cut off by the deadline counts as failed; a
worker not pinged at all before it is reported and not recorded. Each outcome goes through
``Store.record_ping``, which applies the liveness rule (offline after 2 failures, active
after one good ping, draining stays). Failures are data: a dead worker is a row in the
report, never an exception. A worker answering the original NADG's ``{"status":
"healthy"}`` counts as alive.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from database.models import WorkerNode, WorkerStatus
from database.store import Store, StoreError
from nexus_common.protocol import endpoint_url

logger = logging.getLogger(__name__)


class HeartbeatSettings(BaseSettings):
    """How the heartbeat pings (environment variables ``NADG_HEARTBEAT_*``)."""

    model_config = SettingsConfigDict(env_prefix="NADG_HEARTBEAT_", extra="ignore")

    timeout_s: float = Field(default=10.0, gt=0, description="per-request timeout")
    concurrency: int = Field(default=256, ge=1, description="pings in flight at most")
    deadline_s: float = Field(default=50.0, gt=0,
                              description="the whole run's pings end by then")
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
    timed_out: bool = False  #: no answer within the timeout (not retried: it was not quick)


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


#: Connections per HTTP client; the heartbeat uses ``concurrency / POOL_SIZE`` clients.
POOL_SIZE = 16
#: ``/health`` statuses that mean alive: ours, and the original NADG worker's.
ALIVE_STATUSES = ("ok", "degraded", "healthy")


def health_url(vm_url: str) -> str:
    """The ``/health`` URL of a worker."""
    return endpoint_url(vm_url, "/health")


#: The most of a ``/health`` answer read (a real one is a few hundred bytes): any URL in
#: the registry is pinged, and one that answered without end must not fill the pinger.
MAX_HEALTH_BYTES = 64 * 1024


class _TooLong(Exception):
    pass


def _add(body: bytearray, chunk: bytes) -> None:
    body += chunk
    if len(body) > MAX_HEALTH_BYTES:
        raise _TooLong


def read_health(status_code: int, body: bytes, latency_ms: float) -> Probe:
    """What one ``/health`` answer says: alive when HTTP 200 with a JSON status of ``ok``,
    ``degraded`` or (an original NADG worker) ``healthy``."""
    if status_code != 200:
        return Probe(ok=False, latency_ms=latency_ms, status_code=status_code,
                     error=f"HTTP {status_code}")
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    status = doc.get("status") if isinstance(doc, dict) else None
    if status not in ALIVE_STATUSES:
        return Probe(ok=False, latency_ms=latency_ms, status_code=200,
                     error=f"unexpected /health body (status={status!r})")
    version = doc.get("version") if isinstance(doc, dict) else None
    return Probe(ok=True, latency_ms=latency_ms, status_code=200,
                 version=str(version) if version is not None else None,
                 error="degraded" if status == "degraded" else None)


def _failed(exc: Exception) -> Probe:
    if isinstance(exc, _TooLong):
        return Probe(ok=False, error=f"a /health answer over {MAX_HEALTH_BYTES} bytes")
    return Probe(ok=False, error=f"{type(exc).__name__}: {exc}" if str(exc)
                 else type(exc).__name__)


def probe_sync(client: httpx.Client, vm_url: str, timeout_s: float) -> Probe:
    """:func:`probe_once` for a synchronous caller (the local grid, the watchdog)."""
    started = time.perf_counter()
    body = bytearray()
    try:
        with client.stream("GET", health_url(vm_url), timeout=timeout_s) as response:
            for chunk in response.iter_bytes():
                _add(body, chunk)
    except (httpx.HTTPError, _TooLong) as exc:
        return _failed(exc)
    return read_health(response.status_code, bytes(body),
                       (time.perf_counter() - started) * 1000)


async def probe_once(client: httpx.AsyncClient, vm_url: str, timeout_s: float) -> Probe:
    """One ``GET /health``: ok when HTTP 200 with a JSON status of ``ok``, ``degraded`` or
    (an original NADG worker) ``healthy``; at most :data:`MAX_HEALTH_BYTES` read."""
    started = time.perf_counter()
    body = bytearray()
    try:
        # httpx's timeout bounds each connect/read/write step, not the request: a worker
        # (or a proxy in front of it) trickling its answer would hold the ping for ever
        async with asyncio.timeout(timeout_s), client.stream(
                "GET", health_url(vm_url), timeout=timeout_s) as response:
            async for chunk in response.aiter_bytes():
                _add(body, chunk)
    except (httpx.TimeoutException, TimeoutError):
        return Probe(ok=False, error=f"timed out after {timeout_s:g}s", timed_out=True)
    except (httpx.HTTPError, _TooLong) as exc:
        return _failed(exc)
    return read_health(response.status_code, bytes(body),
                       (time.perf_counter() - started) * 1000)


@dataclass
class _Progress:
    """How far one worker's ping got (read when the deadline cuts it off)."""

    attempts: int = 0
    last: Probe | None = None


async def probe(client: httpx.AsyncClient, vm_url: str, settings: HeartbeatSettings,
                gate: asyncio.Semaphore, gauge: InFlight,
                progress: _Progress | None = None) -> Probe:
    """Probe with the quick retries; every attempt holds a slot of ``gate``."""
    progress = progress or _Progress()
    result = Probe(ok=False, error="not probed")
    attempt = 0
    for attempt in range(1, settings.retries + 2):
        async with gate:
            progress.attempts = attempt
            gauge.enter()
            try:
                result = await probe_once(client, vm_url, settings.timeout_s)
            finally:
                gauge.leave()
        progress.last = result
        if result.ok or result.timed_out:
            break  # a worker that used the whole timeout gets no second one this run
        if attempt <= settings.retries and settings.retry_delay_s:
            await asyncio.sleep(settings.retry_delay_s)
    return Probe(ok=result.ok, latency_ms=result.latency_ms, status_code=result.status_code,
                 version=result.version, error=result.error, attempts=attempt,
                 timed_out=result.timed_out)


def _cut_off(progress: _Progress, deadline_s: float) -> Probe | None:
    """What a ping stopped by the deadline found: failed if it started, else None."""
    if progress.attempts == 0:
        return None
    why = f"no answer before the heartbeat's {deadline_s:g}s deadline"
    if progress.last is not None and progress.last.error:
        why = f"{progress.last.error}; then {why}"
    return Probe(ok=False, error=why, attempts=progress.attempts)


async def _record(store: Store, worker: WorkerNode, found: Probe | None,
                  deadline_s: float) -> PingOutcome:
    if found is None:
        return PingOutcome(worker=worker, probe=Probe(ok=False, attempts=0,
                                                      error="not pinged"),
                           record_error=f"not pinged: the heartbeat's {deadline_s:g}s "
                                        "deadline passed first")
    try:
        after = await asyncio.to_thread(
            store.record_ping, worker.id, ok=found.ok, latency_ms=found.latency_ms,
            version=found.version, error=None if found.ok else found.error)
    except StoreError as exc:
        logger.warning("could not record the ping of worker %s: %s", worker.id, exc)
        return PingOutcome(worker=worker, probe=found, record_error=str(exc))
    return PingOutcome(worker=worker, probe=found, after=after)


async def _probe_all(workers: Sequence[WorkerNode], clients: Sequence[httpx.AsyncClient],
                     settings: HeartbeatSettings, gauge: InFlight) -> list[Probe | None]:
    """Probe every worker; by ``deadline_s`` whatever is still going is cut off."""
    gate = asyncio.Semaphore(settings.concurrency)
    progress = [_Progress() for _ in workers]
    tasks = [asyncio.create_task(probe(clients[i % len(clients)], w.vm_url, settings, gate,
                                       gauge, p))
             for i, (w, p) in enumerate(zip(workers, progress, strict=True))]
    if not tasks:
        return []
    _, pending = await asyncio.wait(tasks, timeout=settings.deadline_s)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
        logger.warning("heartbeat deadline (%gs) passed with %d ping(s) unfinished",
                       settings.deadline_s, len(pending))
    return [_cut_off(p, settings.deadline_s) if t in pending else t.result()
            for t, p in zip(tasks, progress, strict=True)]


async def ping_workers(
    store: Store,
    workers: Sequence[WorkerNode] | None = None,
    *,
    settings: HeartbeatSettings | None = None,
    client: httpx.AsyncClient | None = None,
    gauge: InFlight | None = None,
) -> HeartbeatReport:
    """Ping ``workers`` (default: every registered one) and record each outcome.

    The pings end within ``settings.deadline_s``; then every outcome is recorded. Raises
    StoreError only when the worker list itself cannot be read; a failed ping or
    a failed write of one outcome is a row of the report.
    """
    settings = settings or HeartbeatSettings()
    gauge = gauge or InFlight()
    started = time.perf_counter()
    if workers is None:
        workers = await asyncio.to_thread(store.list_workers)
    # a pull worker (pull://NAME) has no URL to ping: its own calls to the store keep it fresh
    workers = [w for w in workers if not w.vm_url.startswith("pull://")]
    # httpx's connection pool does work per queued request and connection on every
    # change, so one pool of hundreds of connections spends more CPU than the pings:
    # several small pools (a worker always uses the same one) keep it linear.
    clients = [client] if client is not None else [
        httpx.AsyncClient(limits=httpx.Limits(max_connections=POOL_SIZE,
                                              max_keepalive_connections=POOL_SIZE),
                          follow_redirects=True, headers={"User-Agent": "nadg-heartbeat"})
        for _ in range(max(1, -(-settings.concurrency // POOL_SIZE)))]
    try:
        found = await _probe_all(workers, clients, settings, gauge)
    finally:
        if client is None:
            await asyncio.gather(*(c.aclose() for c in clients), return_exceptions=True)
    outcomes = await asyncio.gather(
        *(_record(store, w, f, settings.deadline_s) for w, f in zip(workers, found, strict=True)))
    return HeartbeatReport(outcomes=sorted(outcomes, key=lambda o: o.worker.id),
                           peak_in_flight=gauge.peak,
                           duration_s=time.perf_counter() - started)
