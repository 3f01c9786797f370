"""Which executor runs which subtask kind: the one place where kinds are wired up.

Adding a kind is one entry in :func:`build_executors`.
"""

from __future__ import annotations

from worker_node.executors.base import Executor
from worker_node.executors.classify import ClassifyExecutor
from worker_node.executors.embed import EmbedExecutor
from worker_node.executors.generate import GenerateExecutor
from worker_node.executors.noop import NoopExecutor
from worker_node.executors.python import PythonExecutor
from worker_node.executors.train import TrainExecutor
from worker_node.heads import HeadCache
from worker_node.models import ModelCache
from worker_node.protocol import SubtaskKind
from worker_node.settings import WorkerSettings


def build_executors(settings: WorkerSettings, models: ModelCache,
                    heads: HeadCache) -> dict[SubtaskKind, Executor]:
    """One executor per supported kind. Kinds left out are answered ``rejected``."""
    mib = 1024 * 1024
    executors: list[Executor] = [
        NoopExecutor(),
        PythonExecutor(memory_bytes=settings.sandbox_memory_mb * mib,
                       output_bytes=settings.sandbox_output_bytes,
                       file_bytes=settings.sandbox_file_bytes,
                       max_procs=settings.sandbox_max_procs,
                       interpreter=settings.sandbox_python),
        EmbedExecutor(models, settings.embed_model, settings.embed_batch_size),
        ClassifyExecutor(models, heads, settings.embed_model, settings.embed_batch_size),
        GenerateExecutor(models, settings.generate_model),
        TrainExecutor(models, settings.embed_model),
    ]
    return {executor.kind: executor for executor in executors}
