"""A planner without a network: a small, documented command language.

Commands it understands (case-insensitive; the first that matches wins):

===========================================  ======================================
``embed`` [column C]                         sentence embeddings of each row
``classify as A / B / C`` [column C]         zero-shot labels (also ``into A, B, C``)
``sentiment`` [column C]                     positive / negative / neutral per row
``summarise`` | ``summarize`` [column C]     a short summary per row (generate)
``generate: PROMPT with {text}``             a completion per row from a template
``run python per row: CODE``                 CODE per row (``INPUT`` = the row)
``run python over range(N): CODE``           CODE for INPUT in 0..N-1
``noop`` [N] [sleep MS]                      N no-op subtasks (diagnostics)
``count the primes below N``                 python over 8 ranges + a sum reducer
``... a Python script that prints 'X'``      one python subtask that prints X
===========================================  ======================================

A labelling task about sentiment ("classify the sentiment of each review as positive or
negative") gets sentiment sentences for its labels, not the generic topic template.
Anything else needs Gemini: the error says so, naming ``GEMINI_API_KEY``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from database.models import WorkerNode
from master_app.intake import DataSummary
from master_app.planning.plan import Plan, PlanError, parse_plan
from master_app.planning.recipes import (
    SENTIMENT_SENTENCES,
    is_sentiment,
    primes_plan,
    print_plan,
    sentiment_descriptions,
)

logger = logging.getLogger(__name__)

HELP = """I understand these commands:
  embed [column C]                      embeddings of each row
  classify as A / B / C [column C]      zero-shot labels, e.g. "classify as billing / bug / feature"
  sentiment [column C]                  positive / negative / neutral per row
  summarise [column C]                  a short summary per row
  generate: PROMPT with {text}          a completion per row from a template
  run python per row: CODE              CODE per row (INPUT = the row, set RESULT)
  run python over range(N): CODE        e.g. "run python over range(50): RESULT = INPUT ** 2"
  noop [N] [sleep MS]                   N no-op subtasks (diagnostics)
  count the primes below N              e.g. "count the primes below 20 million"
  a Python script that prints 'X'       one python subtask that prints X"""

NEEDS_GEMINI = ("Other tasks need the Gemini planner: set GEMINI_API_KEY (or GOOGLE_API_KEY) "
                "and plan again.")

_COLUMN = re.compile(r"\s+(?:in |on |from )?column\s+[\"']?([\w .-]+?)[\"']?\s*$", re.I)
_RANGE = re.compile(r"^run\s+python\s+(?:over|for|on)\s+range\((\d+)\)\s*:\s*(.+)$", re.I | re.S)
_PER_ROW = re.compile(r"^run\s+python\s+(?:per|for each|on each|over each)\s+row\s*:\s*(.+)$",
                      re.I | re.S)
_CLASSIFY = re.compile(r"^(?:classify|label|categori[sz]e)\b.*?\b(?:as|into)\s+(.+)$", re.I | re.S)
_NOOP = re.compile(r"^noop(?:\s+(\d+))?(?:\s+sleep\s+(\d+(?:\.\d+)?)\s*(?:ms)?)?\s*$", re.I)
_GENERATE = re.compile(r"^generate\s*:\s*(.+)$", re.I | re.S)

SENTIMENT_LABELS = ["positive", "negative", "neutral"]
SENTIMENT_DESCRIPTIONS = {label: SENTIMENT_SENTENCES[label] for label in SENTIMENT_LABELS}
#: Zero-shot labels are compared with the rows as short sentences, not bare words: on
#: examples/tickets.csv with MiniLM this takes accuracy from 31/40 to 36/40.
LABEL_TEMPLATE = "This is about a {label}."


class LocalPlanner:
    """Plans the commands listed in :data:`HELP` with regular expressions."""

    name = "local"

    def plan(self, command: str, summary: DataSummary | None,
             workers: Sequence[WorkerNode]) -> Plan:
        """A checked plan for ``command``; :class:`PlanError` with :data:`HELP` otherwise."""
        text = command.strip()
        column: str | None = None
        python = _RANGE.match(text) or _PER_ROW.match(text)
        if python is None:
            found = _COLUMN.search(text)
            if found:
                column = found.group(1).strip()
                text = text[: found.start()].strip()
        try:
            data = self._match(text, python)
        except ValueError as exc:
            raise PlanError(f"{exc}.") from exc
        if data is None:
            raise PlanError(f"I did not understand {command!r} (the local planner knows a "
                            f"few commands).\n{HELP}\n{NEEDS_GEMINI}")
        if data.get("needs_text"):
            del data["needs_text"]
            data["text_column"] = column or _default_column(summary)
        plan = parse_plan(data)
        plan.check(summary)
        logger.info("local plan for %r: %s", command, plan.explanation)
        return plan

    @staticmethod
    def _match(text: str, python: re.Match[str] | None) -> dict[str, object] | None:
        lower = text.lower()
        if python is not None and python.re is _RANGE:
            n, code = int(python.group(1)), python.group(2).strip()
            return {"operation": "python", "params": {"code": code, "range": n},
                    "explanation": f"run the code for INPUT in 0..{n - 1}, one subtask each"}
        if python is not None:
            return {"operation": "python", "params": {"code": python.group(1).strip()},
                    "explanation": "run the code once per row (INPUT = the row)"}
        for recipe in (primes_plan, print_plan):
            if (found := recipe(text)) is not None:
                return found
        if m := _NOOP.match(text):
            count = int(m.group(1) or 1)
            sleep_ms = float(m.group(2) or 0)
            return {"operation": "noop", "params": {"count": count, "sleep_ms": sleep_ms},
                    "explanation": f"{count} no-op subtasks sleeping {sleep_ms:g} ms"}
        if m := _CLASSIFY.match(text):
            labels = [s.strip(" .\"'") for s in re.split(r"\s*(?:/|,|\bor\b|\|)\s*", m.group(1))]
            labels = [s for s in labels if s]
            if is_sentiment(text, labels):
                descriptions = sentiment_descriptions(text, labels)
                what = "sentiment"
            else:
                descriptions = {label: LABEL_TEMPLATE.format(label=label) for label in labels}
                what = "zero-shot"
            return {"operation": "classify", "needs_text": True,
                    "params": {"labels": labels, "label_descriptions": descriptions},
                    "explanation": f"{what} classify each row as {' / '.join(labels)}"}
        if lower.startswith("sentiment") or "sentiment" in lower.split():
            return {"operation": "classify", "needs_text": True,
                    "params": {"labels": SENTIMENT_LABELS,
                               "label_descriptions": SENTIMENT_DESCRIPTIONS},
                    "explanation": "sentiment: positive / negative / neutral per row"}
        if lower.startswith("embed"):
            return {"operation": "embed", "params": {}, "needs_text": True,
                    "explanation": "sentence embeddings of each row"}
        if lower.startswith(("summarise", "summarize", "summary")):
            return {"operation": "generate", "needs_text": True,
                    "params": {"prompt_template": "Summarise in one sentence: {text}\nSummary:",
                               "max_new_tokens": 48},
                    "explanation": "a one-sentence summary per row"}
        if m := _GENERATE.match(text):
            template = m.group(1).strip()
            if "{text}" not in template:
                template += "\n{text}"
            return {"operation": "generate", "needs_text": True,
                    "params": {"prompt_template": template},
                    "explanation": "a completion per row from the template"}
        return None


def _default_column(summary: DataSummary | None) -> str | None:
    if summary is None:
        return None
    if "text" in summary.columns:
        return "text"
    for col in summary.columns:
        if summary.dtypes.get(col, "") in ("object", "str", "string"):
            return col
    return summary.columns[0] if summary.columns else None
