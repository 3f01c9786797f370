"""One contract for every executor the registry builds: the Executor protocol, its kind,
JSON-serialisable output for a valid payload, and failures raised (never swallowed).

Runs the shared worker's own executors directly, so no model is loaded a second time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from nexus_common.protocol import Subtask, SubtaskKind
from worker_node.executors.base import ExecutionContext, Executor

SAMPLES: dict[SubtaskKind, dict[str, Any]] = {
    SubtaskKind.NOOP: {"echo": [1, "two"]},
    SubtaskKind.PYTHON: {"code": "RESULT = INPUT['a'] * 2", "input": {"a": 4}},
    SubtaskKind.EMBED: {"texts": ["one sentence", "another one"]},
    SubtaskKind.CLASSIFY: {"texts": ["my card was charged"], "labels": ["billing", "bug"]},
    SubtaskKind.GENERATE: {"prompts": ["A cat"], "max_new_tokens": 3},
    SubtaskKind.TRAIN: {"spec": {"family": "mlp", "num_classes": 2, "input_dim": 2},
                        "data": {"features": [[0.0, 1.0], [1.0, 0.0]], "labels": [0, 1]},
                        "hyper": {"local_steps": 1}},
}
BAD: dict[SubtaskKind, dict[str, Any]] = {
    SubtaskKind.GENERATE: {"prompts": ["x"], "model": "/nonexistent/model"},
    SubtaskKind.EMBED: {"texts": ["x"], "model": "/nonexistent/model"},
    SubtaskKind.CLASSIFY: {"texts": ["x"], "labels": ["a", "b"], "model": "/nonexistent/m"},
}


@pytest.fixture(scope="module")
def executors(worker_app: FastAPI, worker_url: str) -> dict[SubtaskKind, Executor]:
    built: dict[SubtaskKind, Executor] = worker_app.state.worker.runner.executors
    return built


def _payload(kind: SubtaskKind, payload: dict[str, Any], tiny_gpt2: Path) -> Any:
    if kind is SubtaskKind.GENERATE:
        payload = {"model": str(tiny_gpt2), **payload}
    return Subtask.model_validate({"id": "c", "task_id": "t", "kind": kind.value,
                                   "payload": payload}).payload


def _ctx() -> ExecutionContext:
    return ExecutionContext(subtask_id="c", task_id="t", timeout_s=30.0)


@pytest.mark.parametrize("kind", list(SubtaskKind))
def test_executor_contract(kind: SubtaskKind, executors: dict[SubtaskKind, Executor],
                           tiny_gpt2: Path) -> None:
    if kind not in executors:
        pytest.skip(f"this worker does not build a {kind.value!r} executor")
    executor = executors[kind]
    assert isinstance(executor, Executor)
    assert executor.kind is kind
    output = executor.run(_payload(kind, SAMPLES[kind], tiny_gpt2), _ctx())
    assert isinstance(output, dict) and output
    json.dumps(output)


@pytest.mark.parametrize("kind", sorted(BAD, key=str))
def test_executor_failures_raise(kind: SubtaskKind, executors: dict[SubtaskKind, Executor],
                                 tiny_gpt2: Path) -> None:
    with pytest.raises(Exception) as info:
        executors[kind].run(_payload(kind, BAD[kind], tiny_gpt2), _ctx())
    assert str(info.value)


def test_expected_outputs(executors: dict[SubtaskKind, Executor], tiny_gpt2: Path) -> None:
    def run(kind: SubtaskKind) -> dict[str, Any]:
        return executors[kind].run(_payload(kind, SAMPLES[kind], tiny_gpt2), _ctx())

    assert run(SubtaskKind.NOOP)["echo"] == [1, "two"]
    assert run(SubtaskKind.PYTHON)["result"] == 8
    assert len(run(SubtaskKind.EMBED)["embeddings"]) == 2
    assert run(SubtaskKind.CLASSIFY)["labels"] == ["billing"]
    assert len(run(SubtaskKind.GENERATE)["completions"]) == 1
