"""The executor interface: one implementation per subtask kind.

An executor's ``run`` is blocking and CPU-bound; the worker calls it from its bounded
thread pool, never on the event loop (except the trivial payloads an
:class:`InlineExecutor` declares, while a slot is free). It returns the output dict of a
completed result, or raises: :class:`SubtaskRejected` for work this worker will not do (a
``rejected`` result), :class:`SubtaskTimedOut` for work that ran past its deadline (a
``timeout`` result), any other exception for a subtask that failed (a ``failed`` result
whose error is the exception's message). The caller enforces timeouts too; executors that
can stop early (a subprocess, a sleep, batches of texts) honour ``ctx.timeout_s``
themselves.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from nexus_common.protocol import SubtaskKind


class SubtaskRejected(Exception):
    """This worker will not run the subtask (unsupported kind, unknown head, ...)."""


class SubtaskTimedOut(Exception):
    """The subtask ran past its deadline; ``output`` holds what it produced until then."""

    def __init__(self, message: str, output: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.output = output


@dataclass(frozen=True, slots=True)
class ExecutionContext:
    """What an executor knows about the subtask it runs."""

    subtask_id: str
    task_id: str
    timeout_s: float
    extra: dict[str, Any] = field(default_factory=dict)
    cancel: threading.Event = field(default_factory=threading.Event)
    #: When this context was made (not copied by ``dataclasses.replace``, which the
    #: runner uses to hand over the time left after the queue).
    started: float = field(default_factory=time.monotonic, init=False)

    def out_of_time(self) -> bool:
        """True once the subtask is cancelled or ``timeout_s`` has passed since ``started``.

        Executors that work in steps (batches of texts) check it between steps, so a
        subtask past its deadline stops using its slot's CPU instead of running on.
        """
        return self.cancel.is_set() or time.monotonic() - self.started >= self.timeout_s


@runtime_checkable
class Executor(Protocol):
    """Runs subtasks of one kind."""

    kind: SubtaskKind

    def run(self, payload: Any, ctx: ExecutionContext) -> dict[str, Any]:
        """Run one subtask's payload; return its output or raise."""
        ...


@runtime_checkable
class InlineExecutor(Executor, Protocol):
    """An executor some of whose subtasks are trivial: microseconds of pure Python, no
    I/O, no sleep. The runner runs those on the event loop instead of its thread pool
    (two thread hops cost more than the work); everything else still goes to the pool."""

    def runs_inline(self, payload: Any) -> bool:
        """True when this payload is trivial enough for the event loop."""
        ...

