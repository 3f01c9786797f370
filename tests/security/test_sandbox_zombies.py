"""Fork bombs leave no zombies and no processes, and the process limit does not slide.

The worker is a child subreaper and reaps whatever a run leaves; the per-run limit is
exact (a PID namespace or a per-run uid counts only the run's own processes), so a run
may fork the same number of children after five fork bombs as before them.
"""

from __future__ import annotations

from tests.security.sandbox_fleet import Target, children_states, descendants
from tests.support.waiting import wait_until

COUNT_FORKS = r"""
import os, time
children = 0
try:
    for _ in range(200):
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        children += 1
except OSError:
    pass
RESULT = children
"""
FORK_BOMB = r"""
import os
while True:
    try:
        if os.fork() == 0:
            os.setsid()
    except OSError:
        pass
"""


def test_fork_bombs_leave_no_zombies_and_the_limit_holds(target: Target) -> None:
    assert target.proc is not None
    worker = target.proc.pid
    before = target.run(COUNT_FORKS)["output"]["result"]
    bombs = target.run_batch(FORK_BOMB, 5, timeout_s=0.5)
    assert [bomb["status"] for bomb in bombs] == ["timeout"] * 5, bombs
    after = target.run(COUNT_FORKS)["output"]["result"]
    assert isinstance(before, int) and before > 0
    if target.level == "process":  # counted against the worker's own uid: its threads vary
        assert abs(after - before) <= 4, (before, after)
    else:
        assert after == before <= 16, (before, after)  # NADG_SANDBOX_MAX_PROCS=16
    wait_until(lambda: children_states(worker) == [], timeout=5,
               what=f"no zombie or leftover child under worker {target.name}")
    # and nothing below the worker at all, still so after another run: a bomb whose
    # processes fork and exit, handed up to the worker, must not carry on between sweeps
    wait_until(lambda: descendants(worker) == [], timeout=10,
               what=f"no process left below worker {target.name}")
    assert target.run("RESULT = 1")["output"]["result"] == 1
    wait_until(lambda: descendants(worker) == [], timeout=10,
               what=f"no process left below worker {target.name} after another run")
    target.assert_still_serves()
