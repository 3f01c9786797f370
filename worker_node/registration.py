"""Self-registration in the grid's registry: register on start, ping on an interval,
mark ``draining`` on a graceful shutdown. Every failure is logged, never fatal.

The store is the database package's :class:`database.store.Registry`; its calls are
synchronous, so they run in a thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from database.models import WorkerStatus
from database.store import Registry, StoreConfigError, WorkerNotFound

logger = logging.getLogger(__name__)

RegistryFactory = Callable[[], Registry]

#: How long :meth:`SelfRegistration.stop` waits for a registry call still in flight.
STOP_WAIT_S = 30.0


def default_registry() -> Registry:
    """The configured store (``database.open_store``)."""
    from database import open_store

    return open_store()


class SelfRegistration:
    """Keeps this worker's row in the registry fresh while it runs."""

    def __init__(self, factory: RegistryFactory, public_url: str, *, name: str,
                 capabilities: Sequence[str], max_concurrency: int, version: str,
                 interval_s: float,
                 on_registered: Callable[[int], None] | None = None) -> None:
        self.factory = factory
        self.on_registered = on_registered
        self.public_url = public_url
        self.name = name
        self.capabilities = list(capabilities)
        self.max_concurrency = max_concurrency
        self.version = version
        self.interval_s = interval_s
        self.worker_id: int | None = None
        self._registry: Registry | None = None
        self._task: asyncio.Task[None] | None = None
        self._inflight: asyncio.Future[None] | None = None

    def _register(self) -> int:
        if self._registry is None:
            self._registry = self.factory()
        node = self._registry.register_worker(
            self.public_url, name=self.name, capabilities=self.capabilities,
            max_concurrency=self.max_concurrency, version=self.version)
        self.worker_id = node.id
        if self.on_registered is not None:  # a late or repeated registration shows too
            self.on_registered(node.id)
        return node.id

    def _ping(self) -> None:
        if self._registry is None or self.worker_id is None:
            self._register()
            return
        try:
            self._registry.record_ping(self.worker_id, ok=True, version=self.version)
        except WorkerNotFound:
            logger.warning("worker %s vanished from the registry; registering again",
                           self.worker_id)
            self._register()

    async def start(self) -> None:
        """Register now (logging any failure) and start the ping loop."""
        try:
            worker_id = await asyncio.to_thread(self._register)
            logger.info("registered as worker %s at %s", worker_id, self.public_url)
        except StoreConfigError as exc:  # a setting is wrong: retrying cannot fix it
            logger.error("self-registration is off: %s", exc)
            return
        except Exception as exc:  # noqa: BLE001 - registration is never fatal
            logger.error("could not register at %s (will retry every %.0fs): %s",
                         self.public_url, self.interval_s, exc)
        self._task = asyncio.create_task(self._loop(), name="nadg-registration")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            # shielded: a ping (or re-registration) already running in its thread is not
            # stopped by cancelling this loop; stop() waits for it before marking draining
            self._inflight = asyncio.ensure_future(asyncio.to_thread(self._ping))
            try:
                await asyncio.shield(self._inflight)
            except Exception as exc:  # noqa: BLE001 - registration is never fatal
                logger.warning("registry ping failed (retrying in %.0fs): %s",
                               self.interval_s, exc)

    async def stop(self) -> None:
        """Stop pinging and mark this worker ``draining``; close the store."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._finish_inflight()
        registry, worker_id = self._registry, self.worker_id
        if registry is not None and worker_id is not None:
            try:
                await asyncio.to_thread(registry.set_worker_status, worker_id,
                                        WorkerStatus.DRAINING)
                logger.info("marked worker %s draining", worker_id)
            except Exception as exc:  # noqa: BLE001 - registration is never fatal
                logger.warning("could not mark worker %s draining: %s", worker_id, exc)
        close = getattr(registry, "close", None)
        if callable(close):
            try:
                await asyncio.to_thread(close)
            except Exception as exc:  # noqa: BLE001 - closing is best effort
                logger.warning("could not close the registry: %s", exc)

    async def _finish_inflight(self) -> None:
        """Let a ping still running in its thread end, so that it cannot re-register the
        worker ``active`` after it was marked draining, nor use the store once closed."""
        inflight = self._inflight
        if inflight is None or inflight.done():
            if inflight is not None and not inflight.cancelled():
                inflight.exception()  # already logged by the loop, or never raised
            return
        done, _ = await asyncio.wait({inflight}, timeout=STOP_WAIT_S)
        if not done:
            logger.warning("a registry call is still running after %.0fs; marking draining "
                           "anyway", STOP_WAIT_S)
            return
        if not inflight.cancelled() and (exc := inflight.exception()) is not None:
            logger.warning("registry ping failed: %s", exc)
