"""``noop``: returns at once (or after ``sleep_ms``), echoing its input; for diagnostics."""

from __future__ import annotations

import time
from typing import Any

from nexus_common.protocol import NoopPayload, SubtaskKind
from worker_node.executors.base import ExecutionContext, SubtaskTimedOut


class NoopExecutor:
    """Sleeps ``sleep_ms`` (cut short by cancellation or the deadline) and echoes."""

    kind = SubtaskKind.NOOP

    def runs_inline(self, payload: NoopPayload) -> bool:
        """A no-op without a sleep is trivial: it runs on the worker's event loop."""
        return payload.sleep_ms <= 0

    def run(self, payload: NoopPayload, ctx: ExecutionContext) -> dict[str, Any]:
        """Wait, then return ``{"echo", "slept_ms"}``."""
        start = time.monotonic()
        wanted = payload.sleep_ms / 1000.0
        if wanted > 0:
            if ctx.cancel.wait(min(wanted, ctx.timeout_s)) or wanted > ctx.timeout_s:
                raise SubtaskTimedOut(f"noop sleep of {payload.sleep_ms} ms passed the "
                                      f"{ctx.timeout_s:.1f}s deadline")
        return {"echo": payload.echo, "slept_ms": (time.monotonic() - start) * 1000}
