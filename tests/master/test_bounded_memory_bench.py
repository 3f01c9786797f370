"""The scale and peer benchmarks' own logic, on small inputs: the store-size accounting of
large results, and the peers' row skipped with a note when Ray and Dask are absent."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from scripts import bench_peers, bench_scale
from tests.support.servers import REPO_ROOT


def test_large_results_leave_the_store_near_their_binary_size() -> None:
    rows = {name: figure for name, figure, _ in bench_scale.bench_store_size(rows=2000,
                                                                            dim=64)}
    assert float(rows["... inline JSON / binary"]) > 3, "inline JSON is several times larger"
    assert float(rows["... object store / binary"]) <= 1.1


def test_peers_are_skipped_with_a_note_when_not_installed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NADG_BENCH_PYTHON", raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert bench_peers.peers_python() is None
    found = bench_peers.run_peers(n=10, samples=2)
    assert "requirements-bench.txt" in str(found["skipped"])


def test_a_failing_peer_interpreter_is_a_note_not_a_crash(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NADG_BENCH_PYTHON", "false")  # exits 1 at once, prints nothing
    found = bench_peers.run_peers(n=10, samples=2)
    assert "failed (exit 1)" in str(found["skipped"])


def test_the_measured_master_reports_its_own_peak_not_its_parents() -> None:
    """The large-task figure comes from a child process; Linux carries a parent's peak RSS
    into ``ru_maxrss`` of a child it forks and execs, so a 300 MB parent made a small
    child look 300 MB large."""
    parent = ("import subprocess, sys\n"
              "ballast = bytearray(300 * 1024 * 1024)\n"
              "ballast[::4096] = b'x' * len(ballast[::4096])\n"
              "print(subprocess.run([sys.executable, '-c', 'import resource; from "
              "scripts.bench_scale import peak_rss_mb; print(peak_rss_mb(), resource."
              "getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)'], capture_output=True, "
              "text=True, check=True).stdout)")
    out = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True,
                         check=True, cwd=REPO_ROOT).stdout.split()
    own, inherited = float(out[0]), float(out[1])
    assert inherited > 300, "the trap this guards against is not there to show"
    assert own < 150
