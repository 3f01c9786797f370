"""``GET /status``: kinds, models, resource use and counters (token required)."""

from __future__ import annotations

import functools
import os
import sys
from typing import Any

from fastapi import APIRouter

from nexus_common.protocol import PROTOCOL_VERSION, SubtaskKind
from worker_node.deps import AuthDep, StateDep
from worker_node.sandbox import sandbox_report
from worker_node.settings import DEFAULT_GENERATE_MODEL, WorkerSettings
from worker_node.state import VERSION

router = APIRouter(dependencies=[AuthDep])

#: How /status names the embedded encoder (its path differs on every host).
EMBEDDED_ENCODER = "all-MiniLM-L6-v2 (embedded)"


def _gpu() -> dict[str, Any] | None:
    """GPU facts if torch is already loaded and sees CUDA (never imports torch itself)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    index = torch.cuda.current_device()
    free, total = torch.cuda.mem_get_info(index)
    return {"name": torch.cuda.get_device_name(index), "count": torch.cuda.device_count(),
            "memory_used_bytes": int(total - free), "memory_total_bytes": int(total)}


def advertised_models(settings: WorkerSettings) -> dict[str, str]:
    """The model each model-using kind runs when a subtask names none."""
    encoder = settings.embed_model or EMBEDDED_ENCODER
    return {"embed": encoder, "classify": encoder, "train": encoder,
            "generate": settings.generate_model or DEFAULT_GENERATE_MODEL}


@functools.cache
def _process() -> Any:
    """This process, one psutil handle for its lifetime: ``cpu_percent(interval=None)``
    measures since the previous call *on the same handle* (a new one always says 0.0)."""
    import psutil

    return psutil.Process()


@router.get("/status")
async def worker_status(state: StateDep) -> dict[str, Any]:
    """What this worker can do and how loaded it is."""
    import psutil

    proc = _process()
    runner = state.runner
    supported = runner.supported_kinds()
    return {
        "worker_id": state.settings.worker_id, "version": VERSION,
        "protocol": PROTOCOL_VERSION, "uptime_s": round(state.uptime_s, 3),
        "kinds": supported,
        "unsupported_kinds": sorted(k.value for k in SubtaskKind if k.value not in supported),
        "capacity": runner.capacity, "queue_size": runner.queue_size,
        "running": runner.running, "queued": runner.queued,
        "device": state.placement.device, "dtype": state.placement.dtype,
        "models": advertised_models(state.settings),
        "models_loaded": state.models.loaded(), "model_load_s": dict(state.models.load_seconds),
        "heads_cached": state.heads.refs(),
        "counters": dict(runner.counts),
        "resources": {
            "cpu_count": os.cpu_count(), "cpu_percent": psutil.cpu_percent(interval=None),
            "process_cpu_percent": proc.cpu_percent(interval=None),
            "rss_bytes": proc.memory_info().rss,
            "memory_total_bytes": psutil.virtual_memory().total,
            "load_avg": list(os.getloadavg()), "gpu": _gpu(),
        },
        "sandbox": sandbox_report(),
        "registered_id": state.registered_id,
        "public_url": state.settings.resolved_public_url,
    }
