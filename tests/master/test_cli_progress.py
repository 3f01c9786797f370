"""Progress on stderr: plain whole lines, rarely, when stderr is not a terminal."""

from __future__ import annotations

import io

from master_app.cli.progress import NoProgress, PlainProgress, RichProgress, make_progress
from master_app.service import EventKind, ProgressEvent


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def event(done: int, total: int, failed: int = 0) -> ProgressEvent:
    return ProgressEvent(kind=EventKind.COMPLETED, subtask_id=f"t:{done}", idx=done,
                         done=done, failed=failed, total=total, in_flight=2)


def test_a_piped_run_of_a_thousand_events_writes_about_ten_lines() -> None:
    out, clock = io.StringIO(), Clock()
    progress = PlainProgress(out, clock=clock)
    for i in range(1, 1001):
        progress(event(i, 1000))  # all within the same second
    progress.close()
    text = out.getvalue()
    lines = text.splitlines()
    assert "\r" not in text
    assert 10 <= len(lines) <= 11, lines
    assert lines[-1].startswith("[" + "#" * 30 + "] 1000/1000 (100%)")
    assert lines[0].startswith("[...") and " 1/1000 " in lines[0], "the first event shows"


def test_a_slow_run_writes_at_most_one_line_per_interval() -> None:
    out, clock = io.StringIO(), Clock()
    progress = PlainProgress(out, clock=clock, interval_s=5.0)
    for i in range(1, 101):  # 100 s for 1 % of the task: only time makes lines
        clock.now = float(i)
        progress(event(i, 10_000))
    progress.close()
    lines = out.getvalue().splitlines()
    assert 20 <= len(lines) <= 22, len(lines)


def test_nothing_new_writes_nothing_and_close_does_not_repeat() -> None:
    out, clock = io.StringIO(), Clock()
    progress = PlainProgress(out, clock=clock)
    for _ in range(50):
        clock.now += 10
        progress(event(3, 10))
    progress.close()
    assert len(out.getvalue().splitlines()) == 1


def test_the_display_suits_the_stream() -> None:
    assert isinstance(make_progress(True, io.StringIO()), PlainProgress)
    assert isinstance(make_progress(False, Terminal()), NoProgress)
    term = Terminal()
    bar = make_progress(True, term)
    assert isinstance(bar, RichProgress)
    for i in range(1, 5):
        bar(event(i, 4))
    bar.close()
    assert "4/4" in term.getvalue()
