"""Process-level setup for inference: torch thread count, sized to the worker's capacity."""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)


def torch_threads_for(capacity: int, configured: int | None = None) -> int:
    """Threads per inference so that ``capacity × threads ≈ cores``."""
    if configured:
        return configured
    return max(1, (os.cpu_count() or 1) // capacity)


def configure_torch(capacity: int, configured: int | None = None) -> int:
    """Set torch's intra-op threads (imports torch: call it from the lifespan)."""
    import torch

    threads = torch_threads_for(capacity, configured)
    torch.set_num_threads(threads)
    logger.info("torch uses %d threads per subtask (capacity %d)", threads, capacity)
    return threads
