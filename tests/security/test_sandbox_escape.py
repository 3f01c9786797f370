"""A run that double-forks, calls setsid and tries to forge later results.

The daemon execs a process carrying a token on its command line (so the test can find
it on the host), then spends seconds rewriting every runner, job or result file it can
reach. Contained: nothing it started is alive once the worker answers, the worker's own
sandbox source is untouched, and the next five results are the true ones.
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

from tests.security.sandbox_fleet import Target, processes_with
from tests.support.waiting import wait_until
from worker_node import sandbox

FORGER = r"""
import glob, os, sys, time
end = time.time() + 8
while time.time() < end:
    tmp = os.environ.get("TMPDIR", "/tmp")
    for pattern in ("/tmp/nadg-py-*", "/var/tmp/nadg-py-*", tmp + "/nadg-py-*"):
        for folder in glob.glob(pattern):
            for name in ("runner.py", "job.json", "result.json"):
                text = '{"result": "forged"}' if name.endswith("json") else "RESULT = 1"
                try:
                    with open(os.path.join(folder, name), "w") as f:
                        f.write(text)
                except OSError:
                    pass
    for path in sys.argv[2:]:
        try:
            with open(path, "a") as f:
                f.write("\nRESULT = 'forged'\n")
        except OSError:
            pass
    time.sleep(0.02)
"""

DAEMON = r"""
import os, sys
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", INPUT["forger"], INPUT["token"],
                                  *INPUT["targets"]])
    os._exit(0)
os.wait()
RESULT = "daemon started"
"""


def _digest(paths: list[Path]) -> list[str]:
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


def test_double_fork_setsid_daemon_dies_with_its_run(target: Target) -> None:
    token = "nadg-escape-" + secrets.token_hex(6)
    sources = [sandbox.RUNNER, sandbox.LANDLOCK, Path(sandbox.__file__)]
    before = _digest(sources)
    answer = target.run(DAEMON, {"forger": FORGER, "token": token,
                                 "targets": [str(p) for p in sources]})
    assert answer["status"] == "completed", answer
    assert answer["output"]["result"] == "daemon started", answer["output"]["stderr"]
    # nothing it started outlives the run (kernel kills are asynchronous: a short deadline)
    wait_until(lambda: not processes_with(token), timeout=3,
               what=f"the escaped daemon of {target.name} to be gone")
    results = [target.run("RESULT = INPUT * 2", i, sid=f"next-{i}") for i in range(5)]
    assert [r["output"]["result"] for r in results] == [0, 2, 4, 6, 8]
    if target.level != "process":  # the weak level runs as the worker's own user
        assert _digest(sources) == before
    target.assert_still_serves()
