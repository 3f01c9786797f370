"""The Workers page in AppTest against a real SQLite registry and real servers on loopback.

Issue 15 items 4 (a URL that does not answer is added offline with a warning; the form is
emptied after a successful add) and 5 (pings run in the background: a worker that holds
the connection open does not freeze the page for its 3 s timeout).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from streamlit.testing.v1 import AppTest

from database.config import StoreSettings, open_store
from database.models import WorkerStatus
from database.store import Store
from master_app.ui import workers_page
from tests.support.servers import free_port, serve_app
from tests.support.ui import _loopback_master  # noqa: F401 - autouse: a loopback master
from tests.support.waiting import wait_until

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


@pytest.fixture
def healthy_url() -> Iterator[str]:
    """A real HTTP server on loopback whose ``/health`` says ok (a worker, as far as the
    probe can tell)."""
    app = FastAPI()

    @app.get("/health")
    def health() -> dict[str, object]:
        return {"status": "ok", "worker_id": "probe-test", "version": "9.9.9"}

    with serve_app(app) as url:
        yield url


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def _page() -> AppTest:
    return AppTest.from_string(PAGE, default_timeout=30).run()


def _add(at: AppTest, url: str, name: str = "") -> AppTest:
    at.text_input(key="add_url").input(url)
    at.text_input(key="add_name").input(name)
    return at.button[[b.label for b in at.button].index("Add worker")].click().run()


def test_a_url_that_does_not_answer_is_added_offline_with_a_warning(own_store: Store) -> None:
    dead = f"http://127.0.0.1:{free_port()}/"
    at = _add(_page(), dead, "ghost")
    assert not at.exception and not at.error
    [worker] = own_store.list_workers()
    assert worker.vm_url == dead.rstrip("/")  # trailing slash dropped
    assert worker.status is WorkerStatus.OFFLINE  # never "active" without an answer
    assert [p.ok for p in own_store.recent_pings(worker.id)] == [False]
    [warning] = [w.value for w in at.warning]
    assert "as offline" in warning and "did not answer GET /health" in warning
    assert not at.success
    assert list(at.dataframe[0].value["status"].iloc[0]) == ["offline"]
    # the add went through: the form is empty for the next one
    assert at.text_input(key="add_url").value == ""
    assert at.text_input(key="add_name").value == ""


def test_a_worker_that_answers_is_added_active_and_the_form_empties(
    own_store: Store, healthy_url: str
) -> None:
    at = _page()
    assert any("No workers registered" in i.value for i in at.info)
    at = _add(at, healthy_url, "alpha")
    assert not at.exception and not at.warning
    assert any("is active" in s.value for s in at.success)
    [worker] = own_store.list_workers()
    assert worker.status is WorkerStatus.ACTIVE
    assert worker.version == "9.9.9" and worker.last_latency_ms is not None
    assert at.text_input(key="add_url").value == ""
    assert at.text_input(key="add_name").value == ""
    assert at.number_input(key="add_cap").value == 4
    table = at.dataframe[0].value
    assert list(table["name"]) == ["alpha"]
    assert list(table["status"].iloc[0]) == ["active"]
    assert table["latency ms"].iloc[0] > 0  # a number (sortable), shown as "N ms"
    proto = at.dataframe[0].proto
    assert proto.placeholder == "—"  # an empty cell is a dash, never "None"
    columns = json.loads(proto.columns)
    assert columns["latency ms"]["type_config"]["format"] == "%.0f ms"
    assert columns["last ping"]["type_config"]["format"] == "HH:mm:ss"  # 24-hour
    assert columns["url"]["width"] == "large"

    at.button(key="drain").click().run()
    assert own_store.get_worker(worker.id).status is WorkerStatus.DRAINING
    assert list(at.dataframe[0].value["status"].iloc[0]) == ["draining"]
    at.button(key="remove").click().run()
    assert not at.exception
    assert own_store.list_workers() == []
    assert any("No workers registered" in i.value for i in at.info)


def test_bad_and_duplicate_urls_are_refused_and_the_form_keeps_its_values(
    own_store: Store,
) -> None:
    own_store.add_worker("http://127.0.0.1:59998")
    at = _add(_page(), "ftp://example.org", "keep-me")
    assert any("not an http(s) URL" in e.value for e in at.error)
    assert at.text_input(key="add_url").value == "ftp://example.org"  # to correct, not retype
    assert at.text_input(key="add_name").value == "keep-me"
    at = _add(at, "http://127.0.0.1:59998")
    assert any("already registered" in e.value for e in at.error)
    assert len(own_store.list_workers()) == 1
    assert not at.exception


def test_ping_runs_in_the_background_and_does_not_freeze_the_page(
    own_store: Store, silent_url: str
) -> None:
    """A worker that holds the connection and never answers takes the whole 3 s timeout:
    the click returns at once with a status, the outcome arrives on a later run."""
    worker = own_store.add_worker(silent_url, name="silent")
    at = _page()
    started = time.monotonic()
    at.button(key="ping_one").click().run()
    took = time.monotonic() - started
    assert not at.exception
    assert took < workers_page.PING_SETTINGS.timeout_s - 1.0, f"the click blocked {took:.1f}s"
    assert any("waiting on 1 worker" in s.label for s in at.get("status")), \
        "a running status is shown while the ping is out"
    job = at.session_state[workers_page.PING_KEY]
    assert not job.future.done()
    at.run()  # the page keeps working meanwhile, with no second ping offered
    assert not at.exception and at.button(key="ping_all").proto.disabled
    assert at.session_state[workers_page.PING_KEY] is job
    wait_until(job.future.done, timeout=10, what="the background ping to time out")
    at.run()
    assert not at.exception
    assert any("silent did not answer: timed out after 3s" in w.value for w in at.warning)
    assert own_store.get_worker(worker.id).consecutive_failures == 1
    assert not at.button(key="ping_all").proto.disabled


def test_ping_all_reaches_the_real_workers_and_draws_latency(
    grid: object, store: Store
) -> None:
    """Against the shared registry, where the local grid's two workers are registered."""
    workers = [w for w in store.list_workers() if w.name and w.name.startswith("ui-")]
    assert len(workers) == 2
    at = _page()
    at.button(key="ping_all").click().run()
    job = at.session_state[workers_page.PING_KEY]
    wait_until(job.future.done, timeout=15, what="Ping all")
    at.run()
    assert not at.exception
    assert any(s.value.startswith("Pinged") for s in [*at.success, *at.warning])
    for w in workers:
        [ping] = store.recent_pings(w.id, limit=1)
        assert ping.ok and ping.latency_ms is not None and ping.latency_ms > 0
    table = at.dataframe[0].value
    ours = table[table["name"].str.startswith("ui-")]
    assert [list(s) for s in ours["status"]] == [["active"], ["active"]]
    assert ours["last ping"].notna().all()  # real timestamps: they sort, shown as "ago"
    assert any(s.value == "Latency" for s in at.subheader)
    assert at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart"), "latency chart drawn"


def test_auto_refresh_is_on_by_default_and_can_be_turned_off(own_store: Store) -> None:
    at = _page()
    assert at.toggle(key=workers_page.AUTO_KEY).value is True
    at.toggle(key=workers_page.AUTO_KEY).set_value(False).run()
    assert not at.exception and at.toggle(key=workers_page.AUTO_KEY).value is False
