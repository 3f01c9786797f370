"""Benchmarks of the master at scale: a 200,000-subtask task's peak memory and how long a
cancel takes, and how much room a 100,000-row embed task's results take in the store.

1. ``run python per row`` over 200,000 rows on 2 local workers, in a fresh master process: run for
   :data:`RUN_S` seconds, then cancel; reports the master's peak RSS (the whole process,
   task creation included), the subtasks/s it reached, and the seconds from the cancel to
   the task being marked cancelled in the store.
2. Store size of a 100,000-row embed task's results (384 float32 each): the bytes the
   ``subtasks`` rows hold against the binary size of the vectors (an ``.npy``), once with
   the results inline as JSON and once with large outputs in the object store
   (:mod:`database.blobs`). The results are the shape the worker returns, made without
   running the model (100,000 real embeddings take minutes on 2 cores); the storage path is
   the real one.

``python -m scripts.bench_scale`` prints the rows on their own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

LARGE_N = 200_000
RUN_S = 15.0
EMBED_ROWS = 100_000
EMBED_DIM = 384

Row = tuple[str, str, str]


async def _large(store_path: Path, n: int, run_s: float) -> dict[str, float]:
    from database.backends.sqlite import SqliteStore
    from database.models import SubtaskStatus, TaskStatus
    from master_app.intake import load_dataset
    from master_app.local_grid import LocalGrid
    from master_app.planning import LocalPlanner
    from master_app.service import GridService
    from master_app.settings import MasterSettings

    store = SqliteStore(store_path)
    token = secrets.token_urlsafe(32)
    try:
        with LocalGrid(2, store, token, capacity=4):
            settings = MasterSettings.model_validate({"NADG_AUTH_TOKEN": token,
                                                      "NADG_HEDGING": False})
            service = GridService(store, settings)
            data_file = store_path.parent / "rows.jsonl"
            data_file.write_text("".join(json.dumps({"x": i, "text": f"row {i}"}) + "\n"
                                         for i in range(n)))
            command = "run python per row: RESULT = INPUT['x'] * 2"
            started = time.perf_counter()
            data = load_dataset(data_file, max_rows=n)
            task_id = service.submit(command, LocalPlanner().plan(command, data.summary(), []),
                                     data)
            del data
            created_s = time.perf_counter() - started
            cancel = asyncio.Event()
            run = asyncio.ensure_future(service.run(task_id, cancel=cancel))
            await asyncio.sleep(run_s)
            done = store.subtask_counts(task_id).get(SubtaskStatus.COMPLETED, 0)
            t0 = time.perf_counter()
            cancel.set()
            outcome = await run
            cancel_s = time.perf_counter() - t0
            assert outcome.status is TaskStatus.CANCELLED, outcome.status
            counts = store.subtask_counts(task_id)
            assert sum(counts.values()) == n
    finally:
        store.close()
    return {"peak_rss_mb": peak_rss_mb(),
            "rate": done / run_s, "cancel_s": cancel_s, "create_s": created_s,
            "cancelled": float(counts.get(SubtaskStatus.CANCELLED, 0))}


def peak_rss_mb() -> float:
    """This process's own peak RSS in MB: ``VmHWM`` of ``/proc/self/status``.

    Not ``getrusage``'s ``ru_maxrss``: Linux carries the parent's peak over a fork and an
    exec into it, so a child started by a large process (``python -m scripts.bench`` after
    the embedding benchmarks) reported the parent's 559 MB as its own.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(n: int, run_s: float) -> None:
    """The measured master (a fresh process, so its peak RSS is this task's alone)."""
    with tempfile.TemporaryDirectory(prefix="nadg-scale-") as tmp:
        figures = asyncio.run(_large(Path(tmp) / "registry.db", n, run_s))
    print("SCALE " + json.dumps(figures))


def bench_large_task(n: int = LARGE_N, run_s: float = RUN_S) -> list[Row]:
    """Peak RSS, rate and cancel time of a ``n``-subtask task, in a fresh process."""
    proc = subprocess.run([sys.executable, "-m", "scripts.bench_scale", "--child", str(n),
                           str(run_s)], capture_output=True, text=True, timeout=900,
                          check=False)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("SCALE ")), None)
    if line is None:
        raise RuntimeError(f"the large-task run failed: {proc.stderr.strip()[-400:]}")
    f = json.loads(line[6:])
    return [
        (f"{n:,}-subtask python task: master peak RSS (creation included)",
         f"{f['peak_rss_mb']:.0f}", "MB"),
        (f"{n:,}-subtask python task: creating and storing it", f"{f['create_s']:.1f}", "s"),
        (f"{n:,}-subtask python task: rate while running", f"{f['rate']:.1f}", "subtasks/s"),
        (f"{n:,}-subtask python task: cancel to cancelled in the store "
         f"({f['cancelled']:.0f} subtasks)", f"{f['cancel_s']:.2f}", "s"),
    ]


def _embed_results(rows: int, dim: int, per: int = 100) -> Iterator[dict[str, object]]:
    """Worker-shaped ``embed`` results, one subtask per ``per`` rows, made one at a time
    (the whole task's vectors as Python lists would take gigabytes)."""
    import numpy as np

    rng = np.random.default_rng(0)
    for start in range(0, rows, per):
        vectors = rng.standard_normal((min(per, rows - start), dim)).astype(np.float32)
        yield {"id": "", "status": "completed", "output": {
            "embeddings": vectors.tolist(), "dim": dim, "model": "all-MiniLM-L6-v2"}}


def bench_store_size(rows: int = EMBED_ROWS, dim: int = EMBED_DIM) -> list[Row]:
    """Bytes in the ``subtasks`` table for an embed task's results: inline JSON against
    large outputs in the object store, both against the binary size of the vectors."""
    from database.backends.sqlite import SqliteStore
    from database.blobs import LocalBlobStore, offload_result
    from database.models import NewSubtask, SubtaskStatus

    binary = rows * dim * 4 + 128  # the .npy of the whole matrix
    per = 100
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="nadg-size-") as tmp:
        for mode in ("inline", "blobs"):
            store = SqliteStore(Path(tmp) / f"{mode}.db")
            blobs = LocalBlobStore(Path(tmp) / f"{mode}-blobs")
            try:
                task = store.create_task("embed", {}, [
                    NewSubtask(idx=i, kind="embed", payload={"texts": []})
                    for i in range((rows + per - 1) // per)])
                for i, result in enumerate(_embed_results(rows, dim, per)):
                    kept = result if mode == "inline" else offload_result(
                        blobs, f"{task.id}:{i}", result)
                    store.record_result(f"{task.id}:{i}", SubtaskStatus.COMPLETED, result=kept)
                import sqlite3

                with sqlite3.connect(store.path) as db:
                    (size,) = db.execute(
                        "SELECT SUM(LENGTH(result)) FROM subtasks WHERE task_id = ?",
                        (task.id,)).fetchone()
                figures[mode] = float(size)
                figures[f"{mode}_blobs"] = float(blobs.total_bytes())
            finally:
                store.close()
    inline, rowbytes = figures["inline"], figures["blobs"] + figures["blobs_blobs"]
    return [
        (f"{rows:,}-row embed results, binary (.npy) size", f"{binary / 1e6:.1f}", "MB"),
        ("... held inline as JSON in the subtasks table", f"{inline / 1e6:.1f}", "MB"),
        ("... inline JSON / binary", f"{inline / binary:.2f}", "ratio"),
        ("... with large outputs in the object store: rows + objects",
         f"{rowbytes / 1e6:.1f}", "MB"),
        ("... object store / binary", f"{rowbytes / binary:.3f}", "ratio"),
    ]


def benchmarks() -> list[Row]:
    """Rows ``(benchmark, figure, unit)`` for ``python -m scripts.bench``."""
    return bench_large_task() + bench_store_size()


def main() -> None:
    """Print this module's rows (or, with ``--child N S``, be the measured master)."""
    if len(sys.argv) >= 4 and sys.argv[1] == "--child":
        logging.basicConfig(level=logging.WARNING)
        _child(int(sys.argv[2]), float(sys.argv[3]))
        return
    from scripts import bench

    bench.main(["--only", "scripts.bench_scale"])


if __name__ == "__main__":
    main()
