"""Progress of a run on stderr: a live rich bar on a terminal, plain lines in a log.

On a terminal the bar redraws in place. When stderr is a pipe or a file (CI, ``2>log``)
redrawing would write hundreds of carriage-return frames, so :class:`PlainProgress`
writes a whole line only when the run has moved on by a tenth, or every
``interval_s`` seconds while something changes, and once at the end.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Protocol, TextIO

from master_app.service import ProgressEvent

#: A plain line at least every this many seconds while the run changes.
PLAIN_INTERVAL_S = 5.0
#: ... or whenever it has moved on by this fraction of the task.
PLAIN_STEP = 0.10


class Progress(Protocol):
    """Called with every progress event; :meth:`close` ends the display."""

    def __call__(self, event: ProgressEvent) -> None: ...

    def close(self) -> None:
        """End the display (the last state stays visible)."""
        ...


def bar(fraction: float, width: int = 30) -> str:
    """``[#####.....]``: a text bar for plain lines."""
    filled = int(width * min(1.0, max(0.0, fraction)))
    return f"[{'#' * filled}{'.' * (width - filled)}]"


def plain_line(event: ProgressEvent) -> str:
    """One line of progress: bar, counts, percentage."""
    return (f"{bar(event.fraction)} {event.finished}/{event.total} "
            f"({event.fraction:.0%})  done {event.done}  failed {event.failed}  "
            f"running {event.in_flight}")


class PlainProgress:
    """Whole lines, at most one per tenth of the task or per ``interval_s``, plus the end."""

    def __init__(self, stream: TextIO, *, interval_s: float = PLAIN_INTERVAL_S,
                 step: float = PLAIN_STEP,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.interval_s = interval_s
        self.step = step
        self.clock = clock
        self.lines = 0
        self._last: ProgressEvent | None = None
        self._printed: str | None = None
        self._printed_fraction = 0.0
        self._printed_at: float | None = None

    def __call__(self, event: ProgressEvent) -> None:
        self._last = event
        now = self.clock()
        line = plain_line(event)
        if line == self._printed:
            return
        moved = event.fraction - self._printed_fraction >= self.step
        due = self._printed_at is None or now - self._printed_at >= self.interval_s
        if moved or due:
            self._write(line, event.fraction, now)

    def _write(self, line: str, fraction: float, now: float) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()
        self.lines += 1
        self._printed, self._printed_fraction, self._printed_at = line, fraction, now

    def close(self) -> None:
        """Write the final state unless it is already the last line."""
        if self._last is not None:
            line = plain_line(self._last)
            if line != self._printed:
                self._write(line, self._last.fraction, self.clock())


class RichProgress:
    """A live bar on a terminal (rich), redrawn a few times a second."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskID,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]subtasks"), BarColumn(), MofNCompleteColumn(),
            TextColumn("done {task.fields[done]}  failed {task.fields[failed]}  "
                       "running {task.fields[running]}"),
            TimeElapsedColumn(), console=Console(file=stream), transient=False)
        self._task: TaskID | None = None

    def __call__(self, event: ProgressEvent) -> None:
        if self._task is None:
            self._progress.start()
            self._task = self._progress.add_task("run", total=event.total or None,
                                                 done=0, failed=0, running=0)
        self._progress.update(self._task, total=event.total or None,
                              completed=event.finished, done=event.done,
                              failed=event.failed, running=event.in_flight)

    def close(self) -> None:
        """Draw the last state and stop redrawing."""
        if self._task is not None:
            self._progress.stop()


class NoProgress:
    """``--no-progress``: nothing."""

    def __call__(self, event: ProgressEvent) -> None:
        return None

    def close(self) -> None:
        """Nothing to end."""
        return None


def make_progress(enabled: bool, stream: TextIO | None = None) -> Progress:
    """The display that suits ``stream`` (stderr by default): rich on a terminal, plain
    lines otherwise, nothing when not ``enabled``."""
    stream = stream or sys.stderr
    if not enabled:
        return NoProgress()
    if stream.isatty():
        return RichProgress(stream)
    return PlainProgress(stream)
