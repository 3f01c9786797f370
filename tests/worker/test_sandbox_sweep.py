"""The orphan sweep's signals never reach the worker itself.

A grandchild's pid is free once its own parent reaps it; reused by one of the worker's
threads between the sweep's walk and its SIGSTOP, it would stop the whole worker (a
thread id is a valid ``kill`` target). The sweep skips this process's own ids.
"""

from __future__ import annotations

import subprocess
import sys

SNIPPET = r"""
import os, signal, threading
from worker_node.sandbox_procs import _signal_all
ready, done = threading.Event(), threading.Event()
tid = []
def work():
    tid.append(threading.get_native_id()); ready.set(); done.wait(30)
threading.Thread(target=work, daemon=True).start()
ready.wait(10)
_signal_all([tid[0], os.getpid()], signal.SIGSTOP)  # as if both pids were reused
done.set()
print("still running")
"""


def test_the_sweep_does_not_stop_its_own_process_or_threads() -> None:
    proc = subprocess.run([sys.executable, "-c", SNIPPET], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "still running"
