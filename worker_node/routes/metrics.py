"""``GET /metrics``: Prometheus text format (token required)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from worker_node.deps import AuthDep, StateDep

router = APIRouter(dependencies=[AuthDep])


@router.get("/metrics")
async def metrics(state: StateDep) -> Response:
    """The worker's metrics registry, rendered."""
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
