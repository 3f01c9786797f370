"""Plans as files: save a validated plan, run it later with no planner call.

A plan file is JSON::

    {"format": "nexus-grid-plan", "version": 1, "command": "classify as a / b",
     "planner": "local planner (no GEMINI_API_KEY set)",
     "data": {"filename": "tickets.csv", "row_count": 40, "columns": ["id", "text"]},
     "plan": {"operation": "classify", "params": {...}, ...}}

``plan`` is exactly :meth:`Plan.model_dump`; ``data`` records what the plan was made for
(informational: the plan is checked again against the data it runs on). Loading
validates everything and says what is wrong, so a hand-edited or truncated file is a
clear error, never a half-run task. The same functions back the UI's download and upload.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from master_app.intake import DataSummary
from master_app.planning.plan import Plan, PlanError, parse_plan
from master_app.service.errors import PlanFileError

logger = logging.getLogger(__name__)

FORMAT = "nexus-grid-plan"
VERSION = 1
#: A plan file larger than this is not a plan (a data file given by mistake, say).
MAX_PLAN_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class SavedPlan:
    """A plan with the command it was made for and how it was made."""

    command: str
    plan: Plan
    planner: str = ""
    data: dict[str, Any] | None = None

    def to_json(self) -> str:
        """The plan file's text."""
        body: dict[str, Any] = {"format": FORMAT, "version": VERSION, "command": self.command,
                                "planner": self.planner, "data": self.data,
                                "plan": self.plan.model_dump(mode="json")}
        return json.dumps(body, indent=2, ensure_ascii=False) + "\n"


def data_note(summary: DataSummary | None) -> dict[str, Any] | None:
    """What a plan file records about the data the plan was made for."""
    if summary is None:
        return None
    return {"filename": summary.filename, "row_count": summary.row_count,
            "columns": list(summary.columns)}


def save_plan(path: str | Path, saved: SavedPlan) -> Path:
    """Write ``saved`` to ``path`` atomically (a crash never leaves half a file)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(saved.to_json())
        os.replace(tmp, path)
    except OSError as exc:
        raise PlanFileError(f"could not write the plan to {path}: {exc.strerror or exc}; "
                            "give a writable path.") from exc
    logger.info("saved the plan for %r to %s", saved.command, path)
    return path


def parse_plan_file(text: str | bytes, name: str = "the plan file") -> SavedPlan:
    """Read a plan file's text; raises :class:`PlanFileError` saying what is wrong."""
    if len(text) > MAX_PLAN_BYTES:
        raise PlanFileError(f"{name} is {len(text):,} bytes, too big for a plan file "
                            f"(at most {MAX_PLAN_BYTES:,}); is it a data file? Pass data "
                            "with --data.")
    try:
        body = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PlanFileError(f"{name} is not JSON ({exc}); save one with "
                            "`run ... --save-plan FILE`.") from None
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise PlanFileError(f"{name} is not a NEXUS Grid plan file (no \"format\": "
                            f"\"{FORMAT}\"); save one with `run ... --save-plan FILE`.")
    if body.get("version") != VERSION:
        raise PlanFileError(f"{name} is plan file version {body.get('version')!r}; this "
                            f"master reads version {VERSION}: plan the task again.")
    command = body.get("command")
    if not isinstance(command, str) or not command.strip():
        raise PlanFileError(f"{name} has no \"command\" (the task the plan was made for).")
    plan_body = body.get("plan")
    if not isinstance(plan_body, dict):
        raise PlanFileError(f"{name} has no \"plan\" object.")
    try:
        plan = parse_plan(plan_body)
    except PlanError as exc:
        raise PlanFileError(f"{name}: {exc}") from None
    data = body.get("data")
    planner = body.get("planner")
    return SavedPlan(command=command, plan=plan,
                     planner=planner if isinstance(planner, str) else "",
                     data=data if isinstance(data, dict) else None)


def load_plan(path: str | Path) -> SavedPlan:
    """Read and validate the plan file at ``path``."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_PLAN_BYTES:
            raise PlanFileError(f"{path} is too big for a plan file (at most "
                                f"{MAX_PLAN_BYTES:,} bytes); is it a data file?")
        text = path.read_bytes()
    except FileNotFoundError:
        raise PlanFileError(f"no such plan file: {path}; check the path.") from None
    except IsADirectoryError:
        raise PlanFileError(f"{path} is a directory, not a plan file.") from None
    except OSError as exc:
        raise PlanFileError(f"cannot read {path}: {exc.strerror or exc}.") from None
    return parse_plan_file(text, str(path))
