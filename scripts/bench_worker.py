"""Benchmark: embed sentences/s through one worker over HTTP vs the same model in-process.

``benchmarks()`` returns ``(benchmark, figure, unit)`` rows for ``python -m scripts.bench``;
``python -m scripts.bench_worker`` prints them on their own. Runs in well under a minute:
one worker subprocess started with the container's command, the embedded MiniLM, 256
short sentences sent as 4 subtasks of 64.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

import httpx

from nexus_common.signing import SigningAuth
from scripts.bench_processes import bench_worker

logger = logging.getLogger(__name__)

N_SENTENCES = 256
PER_SUBTASK = 64
ROUNDS = 2


def _sentences(n: int = N_SENTENCES) -> list[str]:
    topics = ["billing", "a crash", "a feature", "the weather", "a delivery", "the login"]
    return [f"Customer message {i} about {topics[i % len(topics)]}: it happened again "
            f"on day {i % 31} and needs an answer" for i in range(n)]


def _http_rate(url: str, token: str, texts: list[str]) -> float:
    with httpx.Client(base_url=url, auth=SigningAuth(token), timeout=300) as client:
        def send(tag: str) -> None:
            for i in range(0, len(texts), PER_SUBTASK):
                body = client.post("/execute", json={
                    "id": f"{tag}-{i}", "task_id": "bench", "kind": "embed",
                    "payload": {"texts": texts[i:i + PER_SUBTASK]}}).json()
                if body["status"] != "completed":
                    raise RuntimeError(f"bench subtask failed: {body.get('error')}")

        send("warm")
        start = time.perf_counter()
        for r in range(ROUNDS):
            send(f"r{r}")
        return ROUNDS * len(texts) / (time.perf_counter() - start)


def _in_process_rate(texts: list[str]) -> float:
    from nexus_common.encoder import SentenceEncoder, default_model_path

    encoder = SentenceEncoder(default_model_path())
    encoder.encode(texts[:PER_SUBTASK])
    start = time.perf_counter()
    for _ in range(ROUNDS):
        for i in range(0, len(texts), PER_SUBTASK):
            encoder.encode(texts[i:i + PER_SUBTASK])
    return ROUNDS * len(texts) / (time.perf_counter() - start)


def bench() -> list[dict[str, Any]]:
    """Measure both rates and their ratio; one dict per figure."""
    texts = _sentences()
    token = secrets.token_urlsafe(32)
    with bench_worker({"NADG_AUTH_TOKEN": token, "NADG_CAPACITY": "1",
                       "WORKER_ID": "bench-worker"}) as url:
        http_rate = _http_rate(url, token, texts)
    local_rate = _in_process_rate(texts)
    return [
        {"benchmark": "embed via one worker over HTTP", "value": http_rate,
         "unit": "sentences/s"},
        {"benchmark": "embed in-process (same model)", "value": local_rate,
         "unit": "sentences/s"},
        {"benchmark": "worker HTTP / in-process", "value": http_rate / local_rate,
         "unit": "ratio"},
    ]


def benchmarks() -> list[tuple[str, str, str]]:
    """Rows ``(benchmark, figure, unit)`` for the Markdown table of ``scripts.bench``."""
    rows = []
    for row in bench():
        figure = f"{row['value']:.2f}" if row["unit"] == "ratio" else f"{row['value']:.1f}"
        rows.append((str(row["benchmark"]), figure, str(row["unit"])))
    return rows


def main() -> None:
    """Print this module's rows as the suite's Markdown table."""
    from scripts import bench

    bench.main(["--only", "scripts.bench_worker"])


if __name__ == "__main__":
    main()
