"""The scale and peer benchmarks' own logic, on small inputs: the store-size accounting of
large results, and the peers' row skipped with a note when Ray and Dask are absent."""

from __future__ import annotations

import importlib.util

import pytest

from scripts import bench_peers, bench_scale


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
