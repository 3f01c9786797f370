"""Planning with Gemini (google-genai) through structured output.

Gemini sees the command and the data *summary* only, and answers a :class:`GeminiPlan`
(a flat schema the API can enforce); we turn it into a :class:`Plan` and validate it.
Retries (tenacity): 429 and 5xx, honouring ``Retry-After`` or the ``RetryInfo`` delay up to
a cap, with exponential backoff and jitter otherwise. Plans are cached by (command, summary).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import tenacity
from pydantic import ValidationError

from database.models import WorkerNode
from master_app.intake import DataSummary
from master_app.planning.base import PlannerUnavailable
from master_app.planning.gemini_schema import (
    INSTRUCTIONS,
    GeminiPlan,
    GeminiReduce,
    GeminiStep,
    refuse_copied_rows,
)
from master_app.planning.plan import Plan, PlanError, parse_plan

logger = logging.getLogger(__name__)

__all__ = ["PLAN_CACHE", "GeminiPlan", "GeminiPlanner", "GeminiReduce", "GeminiStep",
           "GeminiSynthesizer", "PlanCache", "refuse_copied_rows", "retry_delay_of"]

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
        text = self._generate(self._prompt(command, summary, workers))
        plan = self._parse(text)
        plan.check(summary)
        refuse_copied_rows(plan, summary)
        self._cache.put(key, plan)
        logger.info("gemini plan for %r: %s", command, plan.explanation)
        return plan

    @staticmethod
    def _prompt(command: str, summary: DataSummary | None,
                workers: Sequence[WorkerNode]) -> str:
        data = json.dumps(summary.as_dict(), default=str) if summary else "no data"
        kinds = sorted({c.split(":", 1)[0] for w in workers for c in w.capabilities})
        offered = f" (they run: {', '.join(kinds)})" if kinds else ""
        return (f"{INSTRUCTIONS}\n\nLive workers: {len(workers)}{offered}\n"
                f"Data summary: {data}\nCommand: {command}")

    def _parse(self, text: str | None) -> Plan:
        if not text:
            raise PlanError("Gemini returned an empty answer; try again or use --planner local.")
        try:
            raw = GeminiPlan.model_validate_json(text)
        except ValidationError as exc:
            raise PlanError(f"Gemini's answer is not a valid plan ({_short(exc)}): "
                            f"{text[:200]!r}; try again or use --planner local.") from exc
        return parse_plan(raw.to_plan_dict())

    def _generate_config(self) -> Any:
        """The request config: JSON constrained to the :class:`GeminiPlan` schema."""
        return self._types.GenerateContentConfig(
            response_mime_type="application/json", response_schema=GeminiPlan, temperature=0.0)

    def _generate(self, prompt: str) -> str | None:
        """One ``generateContent`` call, retried by tenacity on 429, 5xx and network errors.

        The wait is the server's own delay (``Retry-After`` or ``RetryInfo``) when it gives
        one, capped at ``max_retry_delay_s``, else exponential backoff with jitter. A server
        that asks for longer than the cap is not retried at all: retrying sooner than asked
        only spends quota, so the error says when to try again instead.
        """
        from google.genai import errors

        config = self._generate_config()
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.retries + 1),
            retry=tenacity.retry_if_exception(self._retryable),
            wait=ServerDelayWait(self.max_retry_delay_s, tenacity.wait_exponential_jitter(
                initial=self.backoff_base_s, max=self.max_retry_delay_s,
                jitter=self.backoff_base_s)),
            sleep=self._sleep, before_sleep=_log_retry, reraise=True)
        try:
            for attempt in retrying:
                with attempt:
                    self.calls += 1
                    response = self._client.models.generate_content(
                        model=self.model, contents=prompt, config=config)
                    answer: str | None = response.text
                    return answer
        except errors.APIError as exc:
            tries = retrying.statistics.get("attempt_number", 1)
            hinted = retry_delay_of(exc)
            if hinted is not None and hinted > self.max_retry_delay_s:
                raise PlannerUnavailable(
                    f"Gemini answered {exc.code} {exc.status or ''}: {exc.message}; it asks "
                    f"to retry in {hinted:g}s, longer than the {self.max_retry_delay_s:g}s "
                    "this master waits (NADG_GEMINI_MAX_RETRY_DELAY_S); try again later "
                    "or use --planner local.") from exc
            raise PlannerUnavailable(
                f"Gemini answered {exc.code} {exc.status or ''}: {exc.message} "
                f"(after {tries} attempt(s)); check GEMINI_API_KEY and quota, or "
                "use --planner local.") from exc
        except Exception as exc:  # httpx timeouts and connection errors, after the retries
            raise PlannerUnavailable(
                f"Gemini could not be reached: {type(exc).__name__}: {exc}; "
                "use --planner local.") from exc
        raise AssertionError("unreachable: tenacity returns or raises")  # pragma: no cover

    def _retryable(self, exc: BaseException) -> bool:
        """429 and 5xx (unless the server asks for longer than we wait), network errors."""
        from google.genai import errors

        if isinstance(exc, errors.APIError):
            if not (exc.code == 429 or exc.code >= 500):
                return False
            hinted = retry_delay_of(exc)
            return hinted is None or hinted <= self.max_retry_delay_s
        return isinstance(exc, Exception)


class ServerDelayWait(tenacity.wait.wait_base):
    """Wait what the server asked for (capped), else what ``fallback`` says."""

    def __init__(self, cap_s: float, fallback: tenacity.wait.wait_base) -> None:
        self.cap_s = cap_s
        self.fallback = fallback

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        hinted = retry_delay_of(exc) if exc is not None else None
        if hinted is not None:
            return min(self.cap_s, hinted)
        return float(self.fallback(retry_state))


def _log_retry(retry_state: tenacity.RetryCallState) -> None:
    exc = retry_state.outcome.exception() if retry_state.outcome else None
    delay = retry_state.next_action.sleep if retry_state.next_action else 0.0
    logger.warning("gemini %s, retry %d in %.2fs", getattr(exc, "code", type(exc).__name__),
                   retry_state.attempt_number, delay)


class GeminiSynthesizer(GeminiPlanner):
    """Writes one answer from a task's results (the ``synthesis`` reduce step).

    Same client, model, timeout and retries as the planner; a plain-text answer.
    """

    name = "gemini-synthesis"

    def _generate_config(self) -> Any:
        return self._types.GenerateContentConfig(response_mime_type="text/plain",
                                                 temperature=0.2)

    def synthesize(self, prompt: str) -> str:
        """Gemini's answer to ``prompt``; :class:`PlannerUnavailable` when it cannot answer."""
        text = self._generate(prompt)
        if not text or not text.strip():
            raise PlannerUnavailable("Gemini returned an empty synthesis; run the task again "
                                     "or use a 'concat' reduce step.")
        return text.strip()


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
