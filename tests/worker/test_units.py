"""Small pieces of the worker on their own: caches, heads, settings, registration failures."""

from __future__ import annotations

import asyncio
import base64
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from database.backends.sqlite import SqliteStore
from database.models import WorkerNode, WorkerStatus
from database.store import StoreUnavailable, WorkerNotFound
from nexus_common.protocol import HeadSpec
from tests.support.servers import free_port, serve_app
from tests.support.waiting import wait_until
from tests.worker.conftest import AUTH, make_settings
from worker_node.executors.base import SubtaskRejected
from worker_node.hardening import is_dumpable
from worker_node.heads import HeadCache, HeadError, decode_head
from worker_node.main import create_app
from worker_node.models import ModelCache
from worker_node.registration import SelfRegistration
from worker_node.runtime import torch_threads_for
from worker_node.settings import InsecureStartRefused, WorkerSettings


def test_model_cache_loads_once_under_concurrency_and_evicts_lru() -> None:
    loads: list[str] = []
    timings: list[str] = []
    gate = threading.Event()

    def loader(name: str) -> str:
        gate.wait(5)
        loads.append(name)
        return name.upper()

    cache = ModelCache(2, on_load=lambda key, _s: timings.append(key))
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("a", lambda: loader("a"))))
               for _ in range(4)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join(10)
    assert results == ["A"] * 4 and loads == ["a"] and timings == ["a"]
    cache.get("b", lambda: loader("b"))
    cache.get("a", lambda: loader("a"))  # a becomes most recent
    cache.get("c", lambda: loader("c"))  # evicts b
    assert cache.loaded() == ["a", "c"]
    assert cache.peek("b") is None and "b" not in cache.load_seconds


def test_model_cache_shares_a_failed_load_with_those_waiting_for_it() -> None:
    calls: list[int] = []
    entered: list[int] = []
    gate = threading.Event()

    def broken() -> str:
        calls.append(1)
        gate.wait(5)
        raise OSError("no such model: /models/missing")

    cache = ModelCache(2)
    errors: list[str] = []

    def ask() -> None:
        entered.append(1)
        try:
            cache.get("missing", broken)
        except OSError as exc:
            errors.append(str(exc))

    first = threading.Thread(target=ask)
    first.start()
    wait_until(lambda: calls, what="the first load to start")
    others = [threading.Thread(target=ask) for _ in range(3)]
    for t in others:
        t.start()
    wait_until(lambda: len(entered) == 4, what="every caller to ask")
    gate.set()
    for t in [first, *others]:
        t.join(10)
    assert len(calls) == 1  # one load, not one per waiting caller
    assert errors == ["no such model: /models/missing"] * 4
    assert cache.get("missing", lambda: "found later") == "found later"  # not cached


def _head_b64(weight_shape: tuple[int, int] = (2, 4)) -> str:
    import torch
    from safetensors.torch import save

    raw = save({"weight": torch.ones(weight_shape), "bias": torch.zeros(weight_shape[0])})
    return base64.b64encode(raw).decode()


def test_decode_head_checks_its_input() -> None:
    head = decode_head(HeadSpec(safetensors_b64=_head_b64(), labels=["x", "y"]))
    assert (head.num_classes, head.dim, head.labels) == (2, 4, ("x", "y"))
    with pytest.raises(HeadError, match="2 classes but 3 labels"):
        decode_head(HeadSpec(safetensors_b64=_head_b64(), labels=["x", "y", "z"]))
    with pytest.raises(HeadError, match="not valid base64"):
        decode_head(HeadSpec(safetensors_b64="***"))
    with pytest.raises(HeadError, match="not a safetensors file"):
        decode_head(HeadSpec(safetensors_b64=base64.b64encode(b"nonsense").decode()))


def test_head_cache_by_ref() -> None:
    cache = HeadCache(1)
    cache.resolve(HeadSpec(ref="h1", safetensors_b64=_head_b64()))
    assert cache.resolve(HeadSpec(ref="h1")).dim == 4
    cache.resolve(HeadSpec(ref="h2", safetensors_b64=_head_b64((3, 4))))
    with pytest.raises(SubtaskRejected, match="resend"):
        cache.resolve(HeadSpec(ref="h1"))


def test_settings_public_url_and_token_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NADG_PUBLIC_URL", "SPACE_HOST", "NADG_AUTH_TOKEN", "NADG_ALLOW_INSECURE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SPACE_HOST", "me-worker.hf.space")
    settings = WorkerSettings(_env_file=None)
    assert settings.resolved_public_url == "https://me-worker.hf.space"
    assert settings.port == 7860
    with pytest.raises(InsecureStartRefused, match="NADG_ALLOW_INSECURE=1"):
        settings.check_secure()
    monkeypatch.setenv("NADG_PUBLIC_URL", "http://10.0.0.5:9000/")
    monkeypatch.setenv("NADG_ALLOW_INSECURE", "1")
    settings = WorkerSettings(_env_file=None)
    assert settings.resolved_public_url == "http://10.0.0.5:9000"
    settings.check_secure()
    with pytest.raises(InsecureStartRefused):
        create_app(WorkerSettings(_env_file=None, NADG_ALLOW_INSECURE=False))


def test_torch_threads_follow_capacity() -> None:
    assert torch_threads_for(1, None) >= 1
    assert torch_threads_for(64, None) == 1
    assert torch_threads_for(2, 3) == 3


def test_registry_failure_is_not_fatal() -> None:
    def broken() -> SqliteStore:
        raise StoreUnavailable("cannot reach Postgres: check DATABASE_URL")

    port = free_port()  # the worker answers signed requests only for its public URL
    settings = make_settings(NADG_REGISTER=True, NADG_PUBLIC_URL=f"http://127.0.0.1:{port}",
                             NADG_PING_INTERVAL_S=0.05)
    with serve_app(create_app(settings, registry_factory=broken), port=port) as url:
        assert httpx.get(f"{url}/health").json()["status"] == "ok"
        status = httpx.get(f"{url}/status", auth=AUTH).json()
        assert status["registered_id"] is None
        assert status["models_loaded"] == []  # /health and /status never load a model
    assert not is_dumpable()


def test_registers_pings_and_drains_in_process(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "registry.db")
    settings = make_settings(NADG_REGISTER=True, NADG_PUBLIC_URL="http://127.0.0.1:7/",
                             NADG_PING_INTERVAL_S=0.05)
    with serve_app(create_app(settings, registry_factory=lambda: store)):
        node = store.find_worker("http://127.0.0.1:7")
        assert node is not None and node.status is WorkerStatus.ACTIVE
        wait_until(lambda: len(store.recent_pings(node.id)) >= 2, timeout=10,
                   what="two pings")
    reopened = SqliteStore(tmp_path / "registry.db")  # the worker closed the one it owned
    try:
        assert reopened.get_worker(node.id).status is WorkerStatus.DRAINING
    finally:
        reopened.close()


class _SlowPingStore(SqliteStore):
    """A registry whose ping is slow and finds the row gone (so the worker re-registers)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.ping_started = threading.Event()
        self.release = threading.Event()
        self.pings_in_flight = 0
        self.drained_during_ping = 0

    def record_ping(self, worker_id: int, **_kw: Any) -> WorkerNode:
        self.pings_in_flight += 1
        self.ping_started.set()
        try:
            self.release.wait(1.0)  # a slow registry call
            raise WorkerNotFound(f"worker {worker_id} is not registered")
        finally:
            self.pings_in_flight -= 1

    def set_worker_status(self, worker_id: int, status: WorkerStatus) -> WorkerNode:
        if self.pings_in_flight:
            self.drained_during_ping += 1
        self.release.set()
        return super().set_worker_status(worker_id, status)


async def test_stop_lets_a_ping_in_flight_end_before_marking_draining(tmp_path: Path) -> None:
    store = _SlowPingStore(tmp_path / "registry.db")
    registration = SelfRegistration(lambda: store, "http://127.0.0.1:9", name="w",
                                    capabilities=["noop"], max_concurrency=1, version="t",
                                    interval_s=0.01)
    await registration.start()
    assert await asyncio.to_thread(store.ping_started.wait, 10)
    await registration.stop()
    wait_until(lambda: store.pings_in_flight == 0, what="the ping thread to end")
    assert store.drained_during_ping == 0
    reopened = SqliteStore(tmp_path / "registry.db")
    try:
        node = reopened.find_worker("http://127.0.0.1:9")
        assert node is not None and node.status is WorkerStatus.DRAINING
    finally:
        reopened.close()


def test_a_late_registration_shows_in_status(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "registry.db")
    calls: list[int] = []

    def flaky() -> SqliteStore:
        calls.append(1)
        if len(calls) == 1:
            raise StoreUnavailable("cannot reach Postgres: check DATABASE_URL")
        return store

    port = free_port()  # the worker answers signed requests only for its public URL
    public_url = f"http://127.0.0.1:{port}"
    settings = make_settings(NADG_REGISTER=True, NADG_PUBLIC_URL=public_url,
                             NADG_PING_INTERVAL_S=0.05)
    with serve_app(create_app(settings, registry_factory=flaky), port=port) as url:
        node = wait_until(lambda: store.find_worker(public_url), what="registration")

        def shown() -> bool:
            body = httpx.get(f"{url}/status", auth=AUTH).json()
            return bool(body["registered_id"] == node.id)

        wait_until(shown, what="/status to show the late registration")
