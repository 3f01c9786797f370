"""The original NADG worker API, served only with ``NADG_COMPAT_V1=1``.

Scripts, Spaces and masters built on the original worker keep working:

- ``GET /`` → ``{"status": "active", "service": "NADG Worker Node", "timestamp"}``
- ``POST /execute`` with the original body ``{"task", "task_id": 0, "timeout": 30}`` →
  ``{"task_id", "status", "output", "error", "executed_at"}``; like the original, the task
  text is acknowledged (logged and echoed), not run. A ``Subtask`` body on the same path
  gets the normal answer, so new masters work against a compat worker too.
- ``POST /execute-python`` with the same body → the same answer plus ``return_code``; the
  task is Python source, run by the worker's sandboxed ``python`` executor (same limits,
  same capacity); past its timeout the answer is HTTP 408, other errors HTTP 500.

Both ``POST`` routes need the grid's token (``AuthDep``: the original ``X-NADG-AUTH``
header is accepted in compat mode). Without ``NADG_COMPAT_V1`` these routes match
nothing: ``GET /`` and ``POST /execute-python`` answer 404 and ``POST /execute`` is the
normal route.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.routing import Match
from starlette.types import Scope

from nexus_common.protocol import (
    MAX_CODE_CHARS,
    MAX_TIMEOUT_S,
    NoopPayload,
    PythonPayload,
    ResultStatus,
    Subtask,
    SubtaskKind,
    SubtaskResult,
)
from worker_node.deps import AuthDep, StateDep
from worker_node.state import WorkerState

logger = logging.getLogger(__name__)

SERVICE = "NADG Worker Node"


class CompatRoute(APIRoute):
    """A route that exists only while the running worker has ``compat_v1`` on."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        app = scope.get("app")
        worker: WorkerState | None = getattr(app.state, "worker", None) if app else None
        if worker is None or not worker.settings.compat_v1:
            return Match.NONE, {}
        return super().matches(scope)


router = APIRouter(route_class=CompatRoute)


class OriginalTask(BaseModel):
    """The original ``/execute`` and ``/execute-python`` body."""

    model_config = ConfigDict(extra="ignore")

    task: str = Field(min_length=1, max_length=MAX_CODE_CHARS)
    task_id: int = 0
    timeout: int = Field(default=30, ge=1, le=int(MAX_TIMEOUT_S))


def _now() -> str:
    return datetime.now(UTC).isoformat()


def is_original_body(body: Any) -> bool:
    """True for ``{"task": ...}`` bodies (the original API), False for a ``Subtask``."""
    return isinstance(body, dict) and "task" in body and "kind" not in body \
        and "payload" not in body


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise RequestValidationError(
            [{"loc": ("body",), "msg": f"the body is not JSON: {exc}", "type": "json_invalid"}]
        ) from exc


def _validate(model: type[BaseModel], body: Any) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**err, "loc": ("body", *err["loc"])} for err in exc.errors(include_url=False)]
        ) from exc


def _subtask(task: OriginalTask, kind: SubtaskKind, payload: Any) -> Subtask:
    return Subtask(id=f"v1-{task.task_id}-{uuid.uuid4().hex[:12]}", task_id=str(task.task_id),
                   kind=kind, payload=payload, timeout_s=float(task.timeout))


@router.get("/", include_in_schema=False)
async def root() -> dict[str, str]:
    """The original liveness answer."""
    return {"status": "active", "service": SERVICE, "timestamp": _now()}


@router.post("/execute", include_in_schema=False, dependencies=[AuthDep])
async def execute_either(request: Request, state: StateDep) -> Any:
    """The original body (acknowledged, not run), or a ``Subtask`` (run as usual)."""
    body = await _json_body(request)
    if not is_original_body(body):
        subtask: Subtask = _validate(Subtask, body)
        return await state.runner.execute(subtask)
    task: OriginalTask = _validate(OriginalTask, body)
    logger.info("original /execute task %d: %.200s", task.task_id, task.task)
    result = await state.runner.execute(
        _subtask(task, SubtaskKind.NOOP, NoopPayload(echo=task.task)))
    if result.status is not ResultStatus.COMPLETED:
        return _original(task, "failed", "", result.error or result.status.value)
    return _original(task, "completed", task.task, "")


@router.post("/execute-python", include_in_schema=False, dependencies=[AuthDep])
async def execute_python(request: Request, state: StateDep) -> dict[str, Any]:
    """Run ``task`` as Python in the sandbox; answer the original shape."""
    task: OriginalTask = _validate(OriginalTask, await _json_body(request))
    result = await state.runner.execute(
        _subtask(task, SubtaskKind.PYTHON, PythonPayload(code=task.task)))
    return _python_answer(task, result)


def _python_answer(task: OriginalTask, result: SubtaskResult) -> dict[str, Any]:
    if result.status is ResultStatus.TIMEOUT:
        raise HTTPException(408, f"task {task.task_id} ran past its {task.timeout}s timeout "
                                 "and was killed: raise 'timeout' or make the code faster")
    if result.status is not ResultStatus.COMPLETED or result.output is None:
        raise HTTPException(500, f"task {task.task_id} could not run: "
                                 f"{result.error or result.status.value}")
    output = result.output
    code = int(output.get("exit_code", -1))
    return {**_original(task, "completed" if code == 0 else "failed",
                        str(output.get("stdout", "")), str(output.get("stderr", ""))),
            "return_code": code}


def _original(task: OriginalTask, status: str, output: str, error: str) -> dict[str, Any]:
    return {"task_id": task.task_id, "status": status, "output": output, "error": error,
            "executed_at": _now()}

