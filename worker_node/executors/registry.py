"""Which executor runs which subtask kind: the one place where kinds are wired up.

Adding a kind is one entry in :func:`build_executors`.
"""

from __future__ import annotations

from nexus_common.protocol import SubtaskKind
from worker_node.device import Placement
from worker_node.executors.base import Executor
from worker_node.executors.classify import ClassifyExecutor
from worker_node.executors.embed import EmbedExecutor
from worker_node.executors.generate import GenerateExecutor
from worker_node.executors.noop import NoopExecutor
from worker_node.executors.python import PythonExecutor
from worker_node.executors.train import TrainExecutor
from worker_node.heads import HeadCache
from worker_node.models import ModelCache
from worker_node.settings import WorkerSettings


def build_executors(settings: WorkerSettings, models: ModelCache, heads: HeadCache,
                    placement: Placement | None = None) -> dict[SubtaskKind, Executor]:
    """One executor per supported kind. Kinds left out are answered ``rejected``.

    ``placement`` is where models run (default: the CPU in float32)."""
    mib = 1024 * 1024
    where = placement or Placement()
    executors: list[Executor] = [
        NoopExecutor(),
        PythonExecutor(memory_bytes=settings.sandbox_memory_mb * mib,
                       output_bytes=settings.sandbox_output_bytes,
                       file_bytes=settings.sandbox_file_bytes,
                       max_procs=settings.sandbox_max_procs,
                       interpreter=settings.sandbox_python),
        EmbedExecutor(models, settings.embed_model, settings.embed_batch_size, where),
        ClassifyExecutor(models, heads, settings.embed_model, settings.embed_batch_size, where),
        GenerateExecutor(models, settings.generate_model, settings.generate_batch_size, where),
        TrainExecutor(models, settings.embed_model, where),
    ]
    return {executor.kind: executor for executor in executors}
