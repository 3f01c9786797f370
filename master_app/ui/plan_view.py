"""The plan before it runs: one card per subtask (or per map), then the reduce step.

Each card says the subtask's kind, what it needs from a worker, and one line about what
it does; the reduce card says how the results make one answer. :func:`plan_cards` is
pure (tested without Streamlit); :func:`plan_preview_ui` draws the cards, lists why the
live grid cannot run the plan, and :func:`plan_json_editor_ui` lets a person edit the plan
as JSON, validated before Run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import streamlit as st

from database.models import WorkerNode
from master_app.intake import DataSummary
from master_app.planning.plan import Plan, PlanError, parse_plan_json, span_parts
from master_app.planning.runnable import check_runnable
from master_app.planning.steps import (
    AnyReduce,
    AnyStep,
    ClassifyStep,
    ConcatReduce,
    EmbedStep,
    GenerateStep,
    PythonReduce,
    PythonStep,
    SynthesisReduce,
)

#: How many subtask cards are drawn before the rest are summed up in one line.
MAX_CARDS = 24
_LINE = 100


@dataclass(frozen=True, slots=True)
class PlanCard:
    """One card of the preview."""

    title: str
    kind: str
    needs: str
    description: str


def needs(kind: str, model: str | None = None) -> str:
    """What a subtask of ``kind`` needs from a worker, in words."""
    if kind == "python":
        return "a python sandbox"
    if kind == "generate":
        return f"generation model {model}" if model else "the worker's generation model"
    if kind in ("embed", "classify"):
        return f"embedding model {model}" if model else "the embedding model (MiniLM)"
    if kind == "noop":
        return "any worker"
    if kind == "gemini":
        return "Gemini on the master (GEMINI_API_KEY)"
    return kind


def _line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _LINE else text[: _LINE - 1] + "…"


def describe_step(step: AnyStep) -> str:
    """One line about a listed subtask (its own description when it has one)."""
    if step.description:
        return _line(step.description)
    if isinstance(step, PythonStep):
        first = next((ln for ln in step.code.splitlines() if ln.strip()), "")
        return _line(f"run python: {first}")
    if isinstance(step, GenerateStep):
        return _line(f"complete: {step.prompt}")
    if isinstance(step, EmbedStep | ClassifyStep):
        what = "embed" if isinstance(step, EmbedStep) else "label"
        if step.rows is not None:
            return f"{what} rows {step.rows.start}..{step.rows.stop - 1} of {step.text_column}"
        return f"{what} {len(step.texts or [])} given text(s)"
    return "no-op (diagnostics)"


def describe_reduce(reducer: AnyReduce) -> str:
    """One line about the reduce step."""
    if isinstance(reducer, ConcatReduce):
        return "join the text of every result, in order"
    if isinstance(reducer, PythonReduce):
        first = reducer.description or next(
            (ln for ln in reducer.code.splitlines() if ln.strip()), "")
        return _line(f"one more python subtask over all results: {first}")
    if isinstance(reducer, SynthesisReduce):
        return _line(f"Gemini writes one answer: {reducer.instruction}")
    return "the results table is the answer"


def _map_card(plan: Plan, kind: str, summary: DataSummary | None) -> PlanCard:
    model = plan.params.get("model")
    if plan.needs_data:
        rows = f"{summary.row_count:,} rows" if summary else "every row"
        what = f"{kind} {rows} of column {plan.text_column!r}"
        if kind == "generate":
            what += f" with the prompt {plan.prompt_template!r}"
    elif kind == "python":
        if "span" in plan.params:
            parts = span_parts(plan.params["span"])
            what = f"python over {len(parts)} ranges from {parts[0][0]:,} to {parts[-1][1]:,}"
        elif "inputs" in plan.params:
            what = f"python over {len(plan.params['inputs'])} inputs"
        elif summary is not None and "range" not in plan.params:
            what = f"python once per row ({summary.row_count:,} rows)"
        else:
            what = f"python over inputs 0..{int(plan.params.get('range', 1)) - 1}"
    else:
        what = f"{int(plan.params.get('count', 1))} no-op subtasks"
    return PlanCard(title=f"Map: {kind}", kind=kind,
                    needs=needs(kind, str(model) if model else None), description=_line(what))


def plan_cards(plan: Plan, summary: DataSummary | None = None) -> list[PlanCard]:
    """The preview's cards: the map or each listed subtask (up to :data:`MAX_CARDS`, then
    one card for the rest), and last the reduce step."""
    cards: list[PlanCard] = []
    if plan.operation is not None:
        cards.append(_map_card(plan, plan.operation.value, summary))
    steps = plan.steps
    for i, step in enumerate(steps[:MAX_CARDS]):
        cards.append(PlanCard(title=f"Subtask {i + 1}", kind=step.kind,
                              needs=needs(step.kind, getattr(step, "model", None)),
                              description=describe_step(step)))
    if len(steps) > MAX_CARDS:
        rest = steps[MAX_CARDS:]
        kinds = ", ".join(sorted({s.kind for s in rest}))
        cards.append(PlanCard(title=f"Subtasks {MAX_CARDS + 1}..{len(steps)}", kind=kinds,
                              needs=", ".join(sorted({needs(s.kind) for s in rest})),
                              description=f"{len(rest)} more subtasks"))
    reducer = plan.reducer
    reduce_needs = {"python": needs("python"), "synthesis": needs("gemini")}.get(
        reducer.kind, "nothing (the master merges)")
    cards.append(PlanCard(title=f"Reduce: {reducer.kind}", kind=reducer.kind,
                          needs=reduce_needs, description=describe_reduce(reducer)))
    return cards


def plan_preview_ui(plan: Plan, summary: DataSummary | None = None,
                    workers: Sequence[WorkerNode] | None = None,
                    gemini_ready: bool = True) -> list[str]:
    """Draw the cards; with ``workers``, show why they cannot run the plan.

    Returns those problems (empty when the plan can run): the page disables Run on any.
    """
    st.markdown("**What will run**")
    cards = plan_cards(plan, summary)
    for row_start in range(0, len(cards), 3):
        columns = st.columns(3)
        for column, card in zip(columns, cards[row_start:row_start + 3], strict=False):
            with column.container(border=True):
                st.markdown(f"**{card.title}** · `{card.kind}`")
                st.caption(f"needs {card.needs}")
                st.write(card.description)
    problems = (check_runnable(plan, workers, gemini_ready=gemini_ready)
                if workers is not None else [])
    for problem in problems:
        st.error(f"Cannot run: {problem}")
    return problems


def plan_json_editor_ui(plan: Plan, key: str,
                        summary: DataSummary | None = None) -> Plan | None:
    """The whole plan as JSON, editable; the validated plan, or None with the error shown."""
    text = st.text_area("Plan (JSON)", json.dumps(plan.model_dump(mode="json"), indent=2),
                        height=260, key=key)
    try:
        edited = parse_plan_json(text)
        edited.check(summary)
    except PlanError as exc:
        st.error(f"The edited plan cannot run: {exc}")
        return None
    return edited
