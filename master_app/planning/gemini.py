"""Planning with Gemini (google-genai) through structured output.

Gemini sees the command and the data *summary* only, and answers a :class:`GeminiPlan`
(a flat schema the API can enforce); we turn it into a :class:`Plan` and validate it.
Retries: 429 and 5xx, honouring ``Retry-After`` or the ``RetryInfo`` delay, with
exponential backoff otherwise. Plans are cached by (command, summary).
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from database.models import WorkerNode
from master_app.intake import DataSummary
from master_app.planning.base import PlannerUnavailable
from master_app.planning.plan import Plan, PlanError, parse_plan
from worker_node import protocol

logger = logging.getLogger(__name__)

_INSTRUCTIONS = """You plan jobs for NEXUS Grid, a grid of worker machines.
Pick ONE operation for the user's command:
- classify: label each row with one of `labels` (2 or more; zero-shot).
- embed: sentence embeddings of each row.
- generate: a completion per row; `prompt_template` must contain {text}.
- python: run `code` (Python; reads INPUT, assigns RESULT) per row, or without data over
  `range_count` inputs 0..N-1 or over `python_inputs` (independent values, e.g. a sweep).
- noop: diagnostics only.
Set `text_column` to the column holding the text for classify/embed/generate.
Never copy the user's data into the plan. Explain the plan in one sentence."""


class GeminiPlan(BaseModel):
    """The response schema Gemini fills in (flat, so the API can enforce it)."""

    operation: str = Field(description="classify | embed | generate | python | noop")
    text_column: str | None = None
    labels: list[str] | None = None
    prompt_template: str | None = None
    max_new_tokens: int | None = None
    code: str | None = None
    range_count: int | None = None
    python_inputs: list[str] | None = Field(
        default=None, description="JSON-encoded input values, one per python subtask")
    shard_size: int | None = None
    explanation: str = ""

    def to_plan_dict(self) -> dict[str, Any]:
        """The equivalent :class:`Plan` fields."""
        params: dict[str, Any] = {}
        op = self.operation.strip().lower()
        if op == "classify":
            params["labels"] = self.labels or []
        elif op == "generate":
            params["prompt_template"] = self.prompt_template or "{text}"
            if self.max_new_tokens and self.max_new_tokens > 0:
                params["max_new_tokens"] = min(self.max_new_tokens,
                                               protocol.MAX_PROMPT_TOKENS_NEW)
        elif op == "python":
            params["code"] = self.code or ""
            if self.range_count is not None:
                params["range"] = self.range_count
            if self.python_inputs is not None:
                params["inputs"] = [_json_or_str(v) for v in self.python_inputs]
        plan: dict[str, Any] = {"operation": op, "params": params,
                                "explanation": self.explanation}
        if self.text_column and op in ("classify", "embed", "generate"):
            plan["text_column"] = self.text_column
        # Sizes are hints the schema cannot bound: clamp them to what a subtask may carry
        # (as sharding does) rather than reject a good plan over a big number.
        if self.shard_size and self.shard_size > 0:
            plan["shard_size"] = min(self.shard_size, protocol.MAX_TEXTS)
        return plan


def _json_or_str(value: str) -> Any:
    try:
        return json.loads(value)
    except (json.JSONDecodeError, TypeError):
        return value


class PlanCache:
    """A small LRU of plans keyed by (model, command, summary), shared by all planners in
    the process: one Gemini call per distinct task, whoever builds the planner."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._plans: OrderedDict[str, Plan] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Plan | None:
        """A copy of the cached plan, if any."""
        with self._lock:
            plan = self._plans.get(key)
            if plan is None:
                return None
            self._plans.move_to_end(key)
            return plan.model_copy(deep=True)

    def put(self, key: str, plan: Plan) -> None:
        """Remember ``plan`` (a copy), evicting the oldest beyond ``size``."""
        with self._lock:
            self._plans[key] = plan.model_copy(deep=True)
            self._plans.move_to_end(key)
            while len(self._plans) > self.size:
                self._plans.popitem(last=False)

    def clear(self) -> None:
        """Forget every plan."""
        with self._lock:
            self._plans.clear()


PLAN_CACHE = PlanCache()


class GeminiPlanner:
    """A :class:`~master_app.planning.base.Planner` backed by the Gemini API."""

    name = "gemini"

    def __init__(
        self,
        api_key: str,
        *,
        model: str = "gemini-2.5-flash",
        base_url: str | None = None,
        timeout_s: float = 60.0,
        retries: int = 4,
        max_retry_delay_s: float = 60.0,
        backoff_base_s: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        from google import genai
        from google.genai import types

        http_options = types.HttpOptions(timeout=int(timeout_s * 1000), base_url=base_url,
                                         api_version="v1beta")
        self._client = genai.Client(api_key=api_key, http_options=http_options)
        self._types = types
        self.model = model
        self.retries = retries
        self.max_retry_delay_s = max_retry_delay_s
        self.backoff_base_s = backoff_base_s
        self._sleep = sleep
        self._cache = PLAN_CACHE
        self.calls = 0

    def plan(self, command: str, summary: DataSummary | None,
             workers: Sequence[WorkerNode]) -> Plan:
        """Ask Gemini once (plus retries) unless the (command, summary) plan is cached."""
        key = json.dumps([self.model, command, summary.as_dict() if summary else None],
                         sort_keys=True, default=str)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        text = self._generate(self._prompt(command, summary, len(workers)))
        plan = self._parse(text)
        plan.check(summary)
        self._cache.put(key, plan)
        logger.info("gemini plan for %r: %s", command, plan.explanation)
        return plan

    @staticmethod
    def _prompt(command: str, summary: DataSummary | None, n_workers: int) -> str:
        data = json.dumps(summary.as_dict(), default=str) if summary else "no data"
        return (f"{_INSTRUCTIONS}\n\nLive workers: {n_workers}\nData summary: {data}\n"
                f"Command: {command}")

    def _parse(self, text: str | None) -> Plan:
        if not text:
            raise PlanError("Gemini returned an empty answer; try again or use --planner local.")
        try:
            raw = GeminiPlan.model_validate_json(text)
        except ValidationError as exc:
            raise PlanError(f"Gemini's answer is not a valid plan ({_short(exc)}): "
                            f"{text[:200]!r}; try again or use --planner local.") from exc
        return parse_plan(raw.to_plan_dict())

    def _generate(self, prompt: str) -> str | None:
        from google.genai import errors

        config = self._types.GenerateContentConfig(
            response_mime_type="application/json", response_schema=GeminiPlan, temperature=0.0)
        attempt = 0
        while True:
            attempt += 1
            self.calls += 1
            try:
                response = self._client.models.generate_content(
                    model=self.model, contents=prompt, config=config)
                answer: str | None = response.text
                return answer
            except errors.APIError as exc:
                retryable = exc.code == 429 or exc.code >= 500
                if not retryable or attempt > self.retries:
                    raise PlannerUnavailable(
                        f"Gemini answered {exc.code} {exc.status or ''}: {exc.message} "
                        f"(after {attempt} attempt(s)); check GEMINI_API_KEY and quota, or "
                        "use --planner local.") from exc
                hinted = retry_delay_of(exc)
                if hinted is not None and hinted > self.max_retry_delay_s:
                    # Retrying sooner than asked only spends quota and time: say when instead.
                    raise PlannerUnavailable(
                        f"Gemini answered {exc.code} {exc.status or ''}: {exc.message}; it asks "
                        f"to retry in {hinted:g}s, longer than the {self.max_retry_delay_s:g}s "
                        "this master waits (NADG_GEMINI_MAX_RETRY_DELAY_S); try again later "
                        "or use --planner local.") from exc
                delay = self._delay(exc, attempt)
                logger.warning("gemini %s, retry %d in %.2fs", exc.code, attempt, delay)
                self._sleep(delay)
            except Exception as exc:  # httpx timeouts and connection errors
                if attempt > self.retries:
                    raise PlannerUnavailable(
                        f"Gemini could not be reached: {type(exc).__name__}: {exc}; "
                        "use --planner local.") from exc
                self._sleep(self._backoff(attempt))

    def _backoff(self, attempt: int) -> float:
        base = self.backoff_base_s * 2 ** (attempt - 1)
        return float(min(self.max_retry_delay_s, base * (0.5 + random.random())))

    def _delay(self, exc: Any, attempt: int) -> float:
        hinted = retry_delay_of(exc)
        if hinted is not None:
            return min(self.max_retry_delay_s, hinted)
        return self._backoff(attempt)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def retry_delay_of(exc: Any) -> float | None:
    """The server's requested delay: ``Retry-After`` header or a ``RetryInfo`` detail."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is not None:
        value = headers.get("retry-after")
        if value is not None:
            try:
                return max(0.0, float(value))
            except ValueError:
                pass
    details = getattr(exc, "details", None)
    found = _find_retry_info(details)
    return found


def _find_retry_info(node: Any) -> float | None:
    if isinstance(node, dict):
        if str(node.get("@type", "")).endswith("RetryInfo"):
            m = _DURATION.match(str(node.get("retryDelay", "")))
            if m:
                return float(m.group(1))
        for value in node.values():
            found = _find_retry_info(value)
            if found is not None:
                return found
    elif isinstance(node, list):
        for value in node:
            found = _find_retry_info(value)
            if found is not None:
                return found
    return None


def _short(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']}"
                     for e in exc.errors()[:3])
