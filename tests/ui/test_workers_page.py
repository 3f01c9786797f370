"""The Workers page in AppTest against a real SQLite registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from database.config import StoreSettings, open_store
from database.models import WorkerStatus
from database.store import Store

PAGE = """
from master_app.ui.workers_page import workers_page
workers_page()
"""


@pytest.fixture
def own_store(
    registry_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Store]:
    """A registry of this test alone (the shared one holds the grid's workers)."""
    path = tmp_path / "workers.db"
    monkeypatch.setenv("NADG_REGISTRY", str(path))
    s = open_store(StoreSettings(NADG_REGISTRY=path))
    yield s
    s.close()


def _page() -> AppTest:
    return AppTest.from_string(PAGE, default_timeout=30).run()


def _add(at: AppTest, url: str, name: str = "") -> AppTest:
    at.text_input(key="add_url").input(url)
    at.text_input(key="add_name").input(name)
    return at.button[[b.label for b in at.button].index("Add worker")].click().run()


def test_add_drain_and_remove_a_worker(own_store: Store) -> None:
    at = _page()
    assert not at.exception
    assert any("No workers registered" in i.value for i in at.info)

    at = _add(at, "http://127.0.0.1:59999/", "alpha")
    assert not at.exception
    assert any("Added worker" in s.value for s in at.success)
    [worker] = own_store.list_workers()
    assert worker.vm_url == "http://127.0.0.1:59999"  # trailing slash dropped
    table = at.dataframe[0].value
    assert list(table["name"]) == ["alpha"]
    assert "active" in table["status"].iloc[0]

    at.button(key="drain").click().run()
    assert own_store.get_worker(worker.id).status is WorkerStatus.DRAINING
    assert "draining" in at.dataframe[0].value["status"].iloc[0]

    at.button(key="remove").click().run()
    assert not at.exception
    assert own_store.list_workers() == []
    assert any("No workers registered" in i.value for i in at.info)


def test_bad_and_duplicate_urls_are_refused_with_a_message(
    own_store: Store,
) -> None:
    own_store.add_worker("http://127.0.0.1:59998")
    at = _page()
    at = _add(at, "ftp://example.org")
    assert any("not an http(s) URL" in e.value for e in at.error)
    at = _add(at, "http://127.0.0.1:59998")
    assert any("already registered" in e.value for e in at.error)
    assert len(own_store.list_workers()) == 1
    assert not at.exception


def test_ping_of_a_dead_worker_is_recorded_as_failed(own_store: Store) -> None:
    from tests.support.servers import free_port

    worker = own_store.add_worker(f"http://127.0.0.1:{free_port()}")
    at = _page()
    at.button(key="ping_one").click().run()
    assert any("did not answer" in w.value for w in at.warning)
    assert own_store.get_worker(worker.id).consecutive_failures == 1
    assert [p.ok for p in own_store.recent_pings(worker.id)] == [False]


def test_ping_all_reaches_the_real_workers_and_draws_latency(
    grid: object, store: Store
) -> None:
    """Against the shared registry, where the local grid's two workers are registered."""
    workers = [w for w in store.list_workers() if w.name and w.name.startswith("ui-")]
    assert len(workers) == 2
    at = _page()
    at.button(key="ping_all").click().run()
    assert not at.exception
    for w in workers:
        [ping] = store.recent_pings(w.id, limit=1)
        assert ping.ok and ping.latency_ms is not None and ping.latency_ms > 0
    table = at.dataframe[0].value
    assert set(table[table["name"].str.startswith("ui-")]["status"]) == {"active"}
    assert (table[table["name"].str.startswith("ui-")]["age"]).str.endswith("s ago").all()
    assert any(s.value == "Latency" for s in at.subheader)
    assert at.get("vega_lite_chart"), "the latency chart is drawn"
