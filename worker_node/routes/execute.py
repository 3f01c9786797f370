"""``POST /execute`` and ``POST /execute/batch``: run subtasks, answer results."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from nexus_common.protocol import MAX_BATCH, Subtask, SubtaskResult
from worker_node.deps import AuthDep, StateDep

router = APIRouter(dependencies=[AuthDep])


@router.post("/execute", response_model=SubtaskResult)
async def execute(subtask: Subtask, state: StateDep) -> SubtaskResult:
    """One subtask → one result (503 with Retry-After when the worker is full)."""
    return await state.runner.execute(subtask)


@router.post("/execute/batch", response_model=list[SubtaskResult])
async def execute_batch(subtasks: list[Subtask], state: StateDep) -> list[SubtaskResult]:
    """A list of subtasks → their results, in the same order."""
    problem = batch_problem(subtasks)
    if problem is not None:
        raise HTTPException(422, problem)
    return await state.runner.execute_batch(subtasks)


def batch_problem(subtasks: list[Subtask]) -> str | None:
    """Why a batch of valid subtasks is refused (422), or None when it is not."""
    if len(subtasks) > MAX_BATCH:
        return (f"a batch holds at most {MAX_BATCH} subtasks, got {len(subtasks)}: "
                "split it")
    if len({subtask.id for subtask in subtasks}) != len(subtasks):
        return "subtask ids in a batch must be unique"
    return None
