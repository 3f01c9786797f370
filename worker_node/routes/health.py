"""``GET /health``: cheap and unauthenticated; never loads a model."""

from __future__ import annotations

from fastapi import APIRouter

from nexus_common.protocol import HealthResponse
from worker_node.deps import StateDep
from worker_node.state import VERSION

router = APIRouter()


@router.get("/health", response_model=HealthResponse)
async def health(state: StateDep) -> HealthResponse:
    """Liveness and load: ``degraded`` when the queue is full."""
    runner = state.runner
    return HealthResponse(
        status="ok" if runner.has_room() else "degraded", worker_id=state.settings.worker_id,
        version=VERSION, uptime_s=round(state.uptime_s, 3), running=runner.running,
        capacity=runner.capacity, queued=runner.queued, kinds=runner.supported_kinds(),
        device=state.placement.device,
    )
