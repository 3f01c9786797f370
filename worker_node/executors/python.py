"""``python``: user code in the sandboxed subprocess of :mod:`worker_node.sandbox`."""

from __future__ import annotations

import logging
from typing import Any

from nexus_common.protocol import PythonPayload, SubtaskKind
from worker_node.executors.base import ExecutionContext, SubtaskTimedOut
from worker_node.sandbox import SandboxLimits, run_python

logger = logging.getLogger(__name__)


class PythonExecutor:
    """Runs ``code`` with ``INPUT``; output = exit code, stdout, stderr and ``RESULT``.

    A non-zero exit is still a *completed* run (the output says how it ended), except that
    code killed at the deadline gives a ``timeout`` result.
    """

    kind = SubtaskKind.PYTHON

    def __init__(self, memory_bytes: int, output_bytes: int, file_bytes: int,
                 max_procs: int, interpreter: str | None = None) -> None:
        self.memory_bytes = memory_bytes
        self.output_bytes = output_bytes
        self.file_bytes = file_bytes
        self.max_procs = max_procs
        self.interpreter = interpreter

    def run(self, payload: PythonPayload, ctx: ExecutionContext) -> dict[str, Any]:
        """Run the code in the sandbox and report how it went."""
        limits = SandboxLimits(timeout_s=ctx.timeout_s, memory_bytes=self.memory_bytes,
                               output_bytes=self.output_bytes, file_bytes=self.file_bytes,
                               max_procs=self.max_procs, interpreter=self.interpreter)
        outcome = run_python(payload.code, payload.input, limits, ctx.cancel)
        logger.info("subtask %s: python exited %s in %.0f ms", ctx.subtask_id,
                    outcome.exit_code, outcome.duration_ms)
        output = outcome.as_output()
        if outcome.timed_out:
            raise SubtaskTimedOut(
                f"python code ran past its {ctx.timeout_s:.1f}s deadline and was killed "
                "(with every process it started)", output)
        return output
