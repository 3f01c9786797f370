"""The worker app: ``create_app(settings)`` and a module-level ``app`` for uvicorn.

``uvicorn worker_node.main:app`` imports this module, so importing it is cheap: the
settings are read, the token checked and the executors built in the lifespan. A worker
with no token refuses to start (unless ``NADG_ALLOW_INSECURE=1``): the lifespan raises,
uvicorn logs the reason and exits non-zero.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from worker_node.auth import RequestAuth
from worker_node.device import Placement, PlacementError, choose_placement
from worker_node.errors import install_error_handlers
from worker_node.fast_execute import ExecuteFastPath
from worker_node.limits import BodySizeLimit
from worker_node.registration import RegistryFactory, SelfRegistration, default_registry
from worker_node.routes import auth, compat, execute, health, metrics, status
from worker_node.settings import InsecureStartRefused, WorkerSettings
from worker_node.state import VERSION, WorkerState

logger = logging.getLogger(__name__)

#: Every router of the worker, in one place. Add a router module here to add endpoints.
#: ``compat`` comes before ``execute``: with NADG_COMPAT_V1=1 it answers ``POST /execute``
#: (both bodies); without it, its routes match nothing.
ROUTERS: list[APIRouter] = [health.router, status.router, compat.router, execute.router,
                            metrics.router, auth.router]


def build_state(settings: WorkerSettings, placement: Placement | None = None) -> WorkerState:
    """Caches, executors, runner and metrics for one app (call inside the event loop);
    models go to ``placement`` (default: the CPU in float32)."""
    from worker_node.executors.registry import build_executors
    from worker_node.heads import HeadCache
    from worker_node.metrics import WorkerMetrics
    from worker_node.models import ModelCache
    from worker_node.runner import SubtaskRunner

    worker_metrics = WorkerMetrics()
    models = ModelCache(settings.model_cache_size, on_load=lambda key, seconds:
                        worker_metrics.model_load.labels(model=key).observe(seconds))
    heads = HeadCache(settings.head_cache_size)
    where = placement or Placement()
    executors = build_executors(settings, models, heads, where)
    runner = SubtaskRunner(executors, settings.capacity, settings.queue_size, worker_metrics)
    return WorkerState(settings=settings, metrics=worker_metrics, models=models, heads=heads,
                       runner=runner, placement=where)


def create_app(settings: WorkerSettings | None = None,
               registry_factory: RegistryFactory | None = None) -> FastAPI:
    """A worker app. ``settings`` None = read from the environment when it starts.

    ``registry_factory`` overrides how the registry is opened (default: the configured
    ``database.open_store``); registration happens only when a public URL is known.
    """
    if settings is not None:
        settings.check_secure()
    holder: dict[str, WorkerSettings] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resolved = settings or WorkerSettings()
        _configure_logging(resolved.log_level)
        try:
            resolved.check_secure()
        except InsecureStartRefused as exc:
            logger.error("%s", exc)
            raise
        holder["settings"] = resolved
        from worker_node.hardening import HardeningRefused, harden

        try:
            await asyncio.to_thread(harden, resolved, settings is None)
        except HardeningRefused as exc:
            logger.error("%s", exc)
            raise
        from worker_node.runtime import configure_torch

        await asyncio.to_thread(configure_torch, resolved.capacity, resolved.torch_threads)
        try:
            placement = await asyncio.to_thread(choose_placement, resolved.device,
                                                resolved.dtype)
        except PlacementError as exc:
            logger.error("%s", exc)
            raise
        state = build_state(resolved, placement)
        app.state.worker = state
        registration = _registration(resolved, state, registry_factory)
        if registration is not None:
            await registration.start()
        logger.info("worker %s ready: kinds %s, capacity %d, queue %d, %s/%s%s%s",
                    resolved.worker_id, ", ".join(state.runner.supported_kinds()),
                    resolved.capacity, resolved.queue_size, placement.device, placement.dtype,
                    ", original NADG API on" if resolved.compat_v1 else "",
                    "" if resolved.has_secret else " (INSECURE: no secret)")
        try:
            yield
        finally:
            if registration is not None:
                await registration.stop()
            state.runner.shutdown()
            logger.info("worker %s stopped", resolved.worker_id)

    docs = settings.docs if settings is not None else _env_flag("NADG_DOCS")
    # /docs, /redoc and /openapi.json are off unless NADG_DOCS=1, and then behind auth
    app = FastAPI(title="NEXUS Grid worker", version=VERSION, lifespan=lifespan,
                  docs_url="/docs" if docs else None, redoc_url="/redoc" if docs else None,
                  openapi_url="/openapi.json" if docs else None)
    for router in ROUTERS:
        app.include_router(router)
    install_error_handlers(app)
    # innermost: the execute routes' hot path, for authenticated, size-checked requests
    app.add_middleware(ExecuteFastPath)
    app.add_middleware(BodySizeLimit, limit=_limit(settings, holder))
    # outermost: nothing is read before the request is authenticated (worker_node.auth)
    app.add_middleware(RequestAuth, limit=_limit(settings, holder))
    return app


def _env_flag(name: str) -> bool:
    """A boolean environment variable as pydantic reads one (1/true/yes/on)."""
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _configure_logging(level: str) -> None:
    """Give the worker's own loggers a handler when nothing configured logging yet."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level.upper(),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _limit(settings: WorkerSettings | None,
           holder: dict[str, WorkerSettings]) -> Callable[[], int]:
    def limit() -> int:
        current = settings or holder.get("settings")
        return current.max_body_bytes if current else WorkerSettings.model_fields[
            "max_body_bytes"].default
    return limit


def _registration(settings: WorkerSettings, state: WorkerState,
                  factory: RegistryFactory | None) -> SelfRegistration | None:
    url = settings.resolved_public_url
    if not settings.self_register or url is None:
        logger.info("self-registration off (%s)", "NADG_REGISTER=0" if not settings.self_register
                    else "no NADG_PUBLIC_URL or SPACE_HOST")
        return None
    if factory is None and not settings.registry_configured:
        logger.info("self-registration off: no registry configured (DATABASE_URL, "
                    "SUPABASE_URL or NADG_REGISTRY)")
        return None
    def registered(worker_id: int) -> None:
        state.registered_id = worker_id

    return SelfRegistration(factory or default_registry, url, name=settings.worker_id,
                            capabilities=state.runner.supported_kinds(),
                            max_concurrency=settings.capacity, version=VERSION,
                            interval_s=settings.ping_interval_s, on_registered=registered)


#: The app uvicorn serves (``uvicorn worker_node.main:app``); settings load at startup.
app = create_app()


def main() -> None:
    """``python worker_node/main.py``: serve this app on ``$PORT`` (default 7860), as the
    original NADG worker did; the same as ``uvicorn worker_node.main:app --port $PORT``."""
    import uvicorn

    settings = WorkerSettings()
    uvicorn.run("worker_node.main:app", host=settings.host, port=settings.port)


if __name__ == "__main__":
    main()
