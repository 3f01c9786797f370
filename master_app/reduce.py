"""The reduce step: a task's results in order → one :class:`~master_app.aggregate.Answer`.

==========  ===============================================================================
concat      the text outputs joined in order (here, deterministic)
table       the results table as CSV (here, deterministic)
python      the plan's reducer run as ONE more python subtask on a worker, in its sandbox,
            with ``INPUT`` = the results in order; the master never runs planner code
synthesis   Gemini writes one answer from the results, each cut to a fair share of the
            prompt budget (``max_input_tokens``, about 4 characters a token)
==========  ===============================================================================

A reduce runs only when every subtask completed: a sum over 7 of 8 ranges is a wrong
answer, not a partial one. The answer is kept in the task's ``result_summary["answer"]``,
so reading a finished task again never dispatches or calls Gemini twice
(:func:`merged_result`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from database.leases import is_pull_url
from database.models import TaskDetail, WorkerNode
from database.store import Store
from master_app.aggregate import Answer, TaskResult, aggregate, texts_of, values_of
from master_app.dispatch import DispatchReport
from master_app.planning.plan import Plan, PlanError
from master_app.planning.steps import (
    AnyReduce,
    ConcatReduce,
    PythonReduce,
    SynthesisReduce,
    TableReduce,
)
from nexus_common import protocol
from nexus_common.protocol import PythonPayload, Subtask

logger = logging.getLogger(__name__)

#: Characters per token when fitting results into a synthesis prompt (a safe estimate).
CHARS_PER_TOKEN = 4
#: The JSON size of a python reducer's INPUT (the results of every subtask).
MAX_REDUCER_INPUT_CHARS = 8 * 1024 * 1024
#: The longest answer text kept with the task (the whole table is in the store anyway).
MAX_ANSWER_CHARS = 1_000_000


class Synthesizer(Protocol):
    """Writes one answer from a prompt (Gemini in production, see ``GeminiSynthesizer``)."""

    def synthesize(self, prompt: str) -> str:
        """The answer text; raises on failure."""
        ...


class Dispatch(Protocol):
    """What the python reducer needs of the dispatcher."""

    async def run_subtasks(self, subtasks: Sequence[Subtask],
                           workers: Sequence[WorkerNode]) -> DispatchReport:
        """Run ``subtasks`` on ``workers``; a report with ``results`` and ``failures``."""
        ...


def reduce_locally(reducer: AnyReduce, result: TaskResult) -> Answer | None:
    """The answer of a deterministic reduce (concat, table); None for python/synthesis."""
    if isinstance(reducer, ConcatReduce):
        texts = texts_of(result)
        text, cut = _capped(reducer.separator.join(texts))
        return Answer(kind="concat", text=text, detail={"parts": len(texts), **cut})
    if isinstance(reducer, TableReduce):
        table = result.table.drop(columns=[c for c in ("error",) if c in result.table
                                           and result.table[c].isna().all()])
        # RFC 4180 line ends: a field holding a bare \r (generated text can) is quoted too
        text, cut = _capped(table.to_csv(index=False, lineterminator="\r\n"))
        return Answer(kind="table", text=text, detail={"rows": len(result.table), **cut})
    return None


def _capped(text: str) -> tuple[str, dict[str, Any]]:
    """``text`` cut to :data:`MAX_ANSWER_CHARS` (the full results stay in the table)."""
    if len(text) <= MAX_ANSWER_CHARS:
        return text, {}
    return text[:MAX_ANSWER_CHARS], {"cut_chars": len(text) - MAX_ANSWER_CHARS}


def synthesis_prompt(reducer: SynthesisReduce, command: str, texts: Sequence[str]) -> str:
    """The synthesis prompt: the instruction, the command, and every result in order,
    each cut to a fair share of the budget so that all of them fit."""
    head = (f"{reducer.instruction}\n\nThe user's task: {command}\n\n"
            f"Below are the {len(texts)} results of its subtasks, in order. Write the one "
            "merged answer.\n")
    budget = reducer.max_input_tokens * CHARS_PER_TOKEN - len(head)
    shares = fair_shares([len(t) for t in texts], max(0, budget - 64 * len(texts)))
    parts = []
    for i, (text, share) in enumerate(zip(texts, shares, strict=True), start=1):
        if len(text) > share:
            text = f"{text[:share]}\n[... {len(text) - share} characters cut to fit]"
        parts.append(f"### Result {i}\n{text}")
    return head + "\n\n".join(parts)


def fair_shares(lengths: Sequence[int], budget: int) -> list[int]:
    """Characters each text may keep so that the total fits ``budget``: short texts keep
    everything, long ones share what is left equally (water-filling)."""
    shares = [0] * len(lengths)
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    left = budget
    for n, i in enumerate(order):
        fair = left // (len(order) - n)
        shares[i] = min(lengths[i], fair)
        left -= shares[i]
    return shares


async def reduce_result(plan: Plan, result: TaskResult, *, command: str,
                        dispatch: Dispatch | None = None,
                        workers: Sequence[WorkerNode] = (),
                        synthesizer: Synthesizer | None = None,
                        timeout_s: float = 60.0) -> Answer:
    """Run the plan's reduce step over ``result``; failures are an :class:`Answer` with
    ``error`` (the results table stays), never an exception."""
    reducer = plan.reducer
    failed = len(result.failures)
    if "error" in result.table.columns:
        failed = max(failed, int(result.table["error"].notna().sum()))
    if failed:
        return Answer(kind=reducer.kind, error=f"{failed} part(s) of the task have no result, "
                      "so there is no merged answer; see the table's errors, then resume or "
                      "run the task again.")
    local = reduce_locally(reducer, result)
    if local is not None:
        return local
    if isinstance(reducer, PythonReduce):
        return await _python_reduce(reducer, result, dispatch, workers, timeout_s)
    if isinstance(reducer, SynthesisReduce):
        return await _synthesis(reducer, result, command, synthesizer)
    return Answer(kind=str(reducer.kind), error=f"unknown reduce step {reducer.kind!r}")


async def _python_reduce(reducer: PythonReduce, result: TaskResult, dispatch: Dispatch | None,
                         workers: Sequence[WorkerNode], timeout_s: float) -> Answer:
    values = values_of(result)
    size = len(json.dumps(values, default=str))
    if size > MAX_REDUCER_INPUT_CHARS:
        return Answer(kind="python", error=f"the results are {size} characters of JSON, more "
                      f"than a reducer takes ({MAX_REDUCER_INPUT_CHARS}); use a 'table' or "
                      "'concat' reduce step.")
    runners = [w for w in workers if not w.capabilities or "python" in w.capabilities]
    if dispatch is None or not runners:
        return Answer(kind="python", error="no live worker runs python, so the reducer cannot "
                      "run; start one and read the task again.")
    subtask = Subtask(id=f"{result.task_id}.reduce", task_id=result.task_id, kind="python",
                      payload=PythonPayload(code=reducer.code, input=values),
                      timeout_s=min(protocol.MAX_TIMEOUT_S, max(1.0, timeout_s)))
    report = await dispatch.run_subtasks([subtask], runners)
    done = report.results.get(subtask.id)
    if done is None:
        failure = report.failures.get(subtask.id)
        reason = getattr(failure, "reason", "no result")
        return Answer(kind="python", error=f"the reducer did not run: {reason}")
    output = done.output or {}
    if output.get("exit_code"):
        stderr = str(output.get("stderr") or "").strip()
        return Answer(kind="python", error=f"the reducer failed (exit code "
                      f"{output.get('exit_code')}): {stderr[-500:]}",
                      detail={"stdout": output.get("stdout")})
    value = output.get("result")
    text = (value if isinstance(value, str) else json.dumps(value, default=str)
            if value is not None else str(output.get("stdout") or ""))
    return Answer(kind="python", text=text, value=value,
                  detail={"inputs": len(values), "stdout": output.get("stdout")})


async def _synthesis(reducer: SynthesisReduce, result: TaskResult, command: str,
                     synthesizer: Synthesizer | None) -> Answer:
    if synthesizer is None:
        return Answer(kind="synthesis", error="a synthesis needs Gemini: set GEMINI_API_KEY "
                      "(or GOOGLE_API_KEY), or change the reduce step to 'concat'.")
    texts = texts_of(result)
    prompt = synthesis_prompt(reducer, command, texts)
    try:
        text = await asyncio.to_thread(synthesizer.synthesize, prompt)
    except PlanError as exc:
        return Answer(kind="synthesis", error=str(exc))
    return Answer(kind="synthesis", text=text,
                  detail={"parts": len(texts), "prompt_chars": len(prompt)})


async def merged_result(store: Store, task_id: str, *, dispatch: Dispatch | None = None,
                        synthesizer: Synthesizer | None = None,
                        timeout_s: float = 60.0,
                        detail: TaskDetail | None = None) -> TaskResult:
    """The aggregated result of a finished task with its merged answer.

    The answer is made once and kept in the task's ``result_summary["answer"]``; later
    reads return the kept one (no second reducer run, no second Gemini call).
    """
    if detail is None:  # a finished run hands its detail on: the task is read once
        detail = await asyncio.to_thread(store.get_task, task_id)
    result = aggregate(detail)
    kept = (detail.task.result_summary or {}).get("answer")
    if isinstance(kept, dict) and kept.get("error") is None:
        result.answer = Answer(kind=str(kept.get("kind")), text=kept.get("text"),
                               value=kept.get("value"), detail=kept.get("detail") or {})
        return result
    plan = plan_of(detail)
    workers = await asyncio.to_thread(store.list_workers) if dispatch is not None else []
    # live push workers only: a pull worker (pull://NAME) takes no HTTP request
    live = [w for w in workers if w.status.live and not is_pull_url(w.vm_url)]
    result.answer = await reduce_result(plan, result, command=detail.task.command,
                                        dispatch=dispatch, workers=live,
                                        synthesizer=synthesizer, timeout_s=timeout_s)
    if result.answer.ok:
        summary = {**(detail.task.result_summary or {}), "answer": result.answer.as_dict()}
        await asyncio.to_thread(store.set_task_status, task_id, detail.task.status,
                                result_summary=summary)
    return result


def plan_of(detail: TaskDetail) -> Plan:
    """The stored plan of a task (plans stored before reduce steps read as a table)."""
    return Plan.model_validate(detail.task.plan)
