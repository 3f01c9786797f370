"""Planning: turn a command and a data summary into a validated :class:`Plan`.

``choose_planner`` picks Gemini or the local planner; ``check_runnable`` says why the live
grid cannot run a plan; ``choose_synthesizer`` gives the Gemini writer of ``synthesis``
reduce steps (None without a key).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

from master_app.planning.base import Planner, PlannerUnavailable
from master_app.planning.local import HELP, LocalPlanner
from master_app.planning.plan import Combine, Plan, PlanError, parse_plan, parse_plan_json
from master_app.planning.runnable import Need, check_runnable, needs_of
from master_app.planning.steps import PlannedSubtask, Reduce, ReduceKind
from master_app.settings import MasterSettings

if TYPE_CHECKING:
    from master_app.planning.gemini import GeminiSynthesizer

logger = logging.getLogger(__name__)


def choose_planner(
    settings: MasterSettings, requested: Literal["gemini", "local"] | str | None = None
) -> tuple[Planner, str]:
    """The planner to use and why: Gemini when a key is set (or asked for), else local.

    Raises :class:`PlanError` when Gemini is requested without a key.
    """
    if requested not in (None, "gemini", "local"):
        raise PlanError(f"unknown planner {requested!r}; use 'gemini' or 'local'.")
    if requested == "local":
        return LocalPlanner(), "local planner (requested)"
    if settings.gemini_api_key:
        from master_app.planning.gemini import GeminiPlanner

        planner = GeminiPlanner(
            settings.gemini_api_key, model=settings.gemini_model,
            base_url=settings.gemini_base_url, timeout_s=settings.gemini_timeout_s,
            retries=settings.gemini_retries, max_retry_delay_s=settings.gemini_max_retry_delay_s)
        why = "requested" if requested == "gemini" else "GEMINI_API_KEY is set"
        return planner, f"Gemini planner ({settings.gemini_model}; {why})"
    if requested == "gemini":
        raise PlanError("the Gemini planner needs GEMINI_API_KEY (or GOOGLE_API_KEY); set it "
                        "or use --planner local.")
    return LocalPlanner(), "local planner (no GEMINI_API_KEY set)"


def choose_synthesizer(settings: MasterSettings) -> GeminiSynthesizer | None:
    """The Gemini writer of ``synthesis`` reduce steps, or None when no key is set."""
    if not settings.gemini_api_key:
        return None
    from master_app.planning.gemini import GeminiSynthesizer

    return GeminiSynthesizer(
        settings.gemini_api_key, model=settings.gemini_model,
        base_url=settings.gemini_base_url, timeout_s=settings.gemini_timeout_s,
        retries=settings.gemini_retries, max_retry_delay_s=settings.gemini_max_retry_delay_s)


__all__ = ["HELP", "Combine", "LocalPlanner", "Need", "Plan", "PlanError", "PlannedSubtask",
           "Planner", "PlannerUnavailable", "Reduce", "ReduceKind", "check_runnable",
           "choose_planner", "choose_synthesizer", "needs_of", "parse_plan", "parse_plan_json"]
