"""Can the live grid run a plan? Checked before Run, with the reason when it cannot.

A worker advertises ``capabilities`` in the registry: the kinds it runs (``python``,
``generate``, ...) and, optionally, the models it serves as ``kind:model`` entries
(``generate:HuggingFaceTB/SmolLM2-135M-Instruct``; ``generate:*`` = any model by id). A
worker that lists no model for a kind runs that kind with any model it can load; a worker
that lists no capabilities at all (registered by hand, or by an older worker) is assumed
to run everything, as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from database.models import LIVE_STATUSES, WorkerNode
from master_app.planning.plan import Plan
from master_app.planning.steps import PythonReduce, SynthesisReduce

_LIVE = LIVE_STATUSES  # the one definition (database.models)


@dataclass(frozen=True, slots=True)
class Need:
    """What a part of a plan needs from a worker: a kind, and maybe a model."""

    kind: str
    model: str | None = None
    part: str = ""

    def __str__(self) -> str:
        return self.kind + (f" with model {self.model!r}" if self.model else "")


def needs_of(plan: Plan) -> list[Need]:
    """Every distinct (kind, model) the plan needs from workers, in plan order."""
    found: list[Need] = []
    if plan.operation is not None:
        model = plan.params.get("model")
        found.append(Need(plan.operation.value, str(model) if model else None, "the map"))
    for i, step in enumerate(plan.steps):
        model = getattr(step, "model", None)
        found.append(Need(step.kind, model, f"subtask {i}"))
    if isinstance(plan.reducer, PythonReduce):
        found.append(Need("python", None, "the python reduce step"))
    unique: dict[tuple[str, str | None], Need] = {}
    for need in found:
        unique.setdefault((need.kind, need.model), need)
    return list(unique.values())


def serves(worker: WorkerNode, need: Need) -> bool:
    """Whether ``worker``'s advertised capabilities cover ``need``."""
    caps = set(worker.capabilities)
    if not caps:
        return True
    if need.kind not in caps:
        return False
    models = {c.split(":", 1)[1] for c in caps if c.startswith(need.kind + ":")}
    return need.model is None or not models or "*" in models or need.model in models


def check_runnable(plan: Plan, workers: Sequence[WorkerNode], *,
                   gemini_ready: bool = True) -> list[str]:
    """The reasons the live ``workers`` cannot run ``plan`` (empty: it can run).

    ``gemini_ready``: whether a Gemini key is configured (a ``synthesis`` reduce needs it).
    """
    live = [w for w in workers if w.status in _LIVE]
    problems: list[str] = []
    if not live:
        problems.append("no live worker in the registry; start one or add one with "
                        "`python -m database.manage_workers add URL`")
    else:
        for need in needs_of(plan):
            if not any(serves(w, need) for w in live):
                offered = "; ".join(f"{w.name or w.vm_url}: {', '.join(w.capabilities)}"
                                    for w in live[:5])
                problems.append(f"no live worker runs {need} (needed by {need.part}); live "
                                f"workers advertise {offered}")
    if isinstance(plan.reducer, SynthesisReduce) and not gemini_ready:
        problems.append("the synthesis reduce step needs Gemini: set GEMINI_API_KEY (or "
                        "GOOGLE_API_KEY), or change the reduce step to 'concat'")
    return problems
