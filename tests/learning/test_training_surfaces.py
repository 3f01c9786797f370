"""The surfaces: ``python -m master_app train`` and the Streamlit Training page."""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from database.config import StoreSettings, open_store
from master_app.cli import main
from tests.learning.conftest import TOKEN, worker_settings
from tests.support.servers import REPO_ROOT, serve_app
from tests.support.waiting import hold_until, wait_until
from worker_node.main import create_app


def _use_registry(path: Path, workers: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``path`` an SQLite registry of ``workers`` (name -> URL), configured through
    the environment as the CLI and the app read it."""
    store = open_store(StoreSettings(NADG_REGISTRY=path))
    for name, url in workers.items():
        store.add_worker(url, name=name)
    store.close()
    for key in ("DATABASE_URL", "SUPABASE_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NADG_REGISTRY", str(path))
    monkeypatch.setenv("NADG_AUTH_TOKEN", TOKEN)
    st.cache_resource.clear()


@pytest.fixture
def registry(grid: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An SQLite registry listing the grid's workers, configured through the environment."""
    path = tmp_path / "registry.db"
    _use_registry(path, {f"learn-{i}": url for i, url in enumerate(grid[:2])}, monkeypatch)
    yield path
    st.cache_resource.clear()


def test_cli_train_prints_rounds_resumes_and_deploys(
        registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["train", "--data", str(REPO_ROOT / "examples" / "tickets_labelled.csv"),
            "--label-column", "label", "--rounds", "2", "--strategy", "diloco",
            "--codec", "int8", "--checkpoint-dir", str(tmp_path / "ckpt"), "--json"]
    assert main([*args, "--deploy"]) == 0
    out, err = capsys.readouterr()
    assert "round 1/2" in err and "round 2/2" in err
    summary = json.loads(out)
    assert summary["accuracy"] > 0.8 and summary["resumed_from"] is None
    assert len(summary["deployment"]["deployed_to"]) == 2
    store = open_store(StoreSettings(NADG_REGISTRY=registry))
    try:
        assert [m.id for m in store.list_models()] == [summary["deployment"]["model_id"]]
    finally:
        store.close()
    # Run again with more rounds: the master resumes from its last checkpoint.
    assert main([*args[:5], "--rounds", "3", *args[7:]]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["resumed_from"] == 2 and "round 3/3" in err
    assert "round 1/" not in err
    third = json.loads(out)
    # The same command once more: nothing left to train, and the summary still says how
    # good the model is (from the checkpoint), not accuracy null.
    assert main([*args[:5], "--rounds", "3", *args[7:]]) == 0
    out, err = capsys.readouterr()
    again = json.loads(out)
    assert again["resumed_from"] == 3 and "nothing to train" in err and "round 3/3" not in err
    assert again["accuracy"] == third["accuracy"] and again["train_loss"] == third["train_loss"]


def test_cli_train_explains_a_bad_label_column(registry: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "--data", str(REPO_ROOT / "examples" / "tickets_labelled.csv"),
                 "--label-column", "nope"])
    assert code == 2 and "no column 'nope'" in capsys.readouterr().err


def test_training_page_trains_digits_and_shows_charts(registry: Path) -> None:
    at = AppTest.from_string(
        "from master_app.ui.training import training_page\ntraining_page()",
        default_timeout=120)
    at.run()
    assert not at.exception and at.title[0].value == "Training"
    at.radio(key="train_source").set_value("digits demo (scikit-learn, numeric)").run()
    at.number_input(key="train_rounds").set_value(3).run()
    at.button(key="train_go").click().run()
    assert not at.exception, at.exception
    # The rounds run in the background: the page polls until they are done.
    at = wait_until(lambda: (at.run() and any(s.value == "Last training run"
                                              for s in at.subheader) and at),
                    timeout=120, interval=0.2, what="the training run to finish")
    assert not at.exception, at.exception
    assert at.subheader[0].value == "Last training run"
    assert float(at.metric[0].value) > 0.7
    assert len(at.dataframe[0].value) == 3


PAGE = "from master_app.ui.training import training_page\ntraining_page()"


class _Gate:
    """ASGI middleware before a real worker: holds its ``POST /execute`` calls until
    ``opened`` is set, or refuses them with a 500 while ``refuse`` is true."""

    def __init__(self, app: Any) -> None:
        self.app, self.opened, self.refuse, self.held = app, threading.Event(), False, 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (scope["type"] == "http" and scope["method"] == "POST"
                and scope["path"].startswith("/execute")):
            if self.refuse:
                await send({"type": "http.response.start", "status": 500,
                            "headers": [(b"content-type", b"text/plain")]})
                await send({"type": "http.response.body", "body": b"refused by the test"})
                return
            self.held += 1
            await hold_until(self.opened.is_set, timeout=120)
        await self.app(scope, receive, send)


@pytest.fixture
def gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[_Gate]:
    """A registry whose one worker sits behind a :class:`_Gate`."""
    gate = _Gate(create_app(worker_settings(7)))
    with serve_app(gate) as url:
        _use_registry(tmp_path / "gated.db", {"gated": url}, monkeypatch)
        try:
            yield gate
        finally:
            gate.opened.set()  # let held requests finish so the server can stop
            st.cache_resource.clear()


def test_training_runs_in_the_background_and_can_be_cancelled(gate: _Gate) -> None:
    at = AppTest.from_string(PAGE, default_timeout=30).run()
    at.radio(key="train_source").set_value("digits demo (scikit-learn, numeric)").run()
    at.number_input(key="train_rounds").set_value(2).run()
    at.button(key="train_go").click().run()
    # The script returned while round 1 is held on the worker: progress, Train disabled.
    assert not at.exception, at.exception
    assert at.button(key="train_go").proto.disabled and at.get("progress")
    assert not any(s.value == "Last training run" for s in at.subheader)
    wait_until(lambda: gate.held >= 1, timeout=30, what="round 1 to reach the worker")
    at.button(key="train_cancel").click().run()
    at = wait_until(lambda: (at.run() and any("cancelled after 0 of 2 rounds" in w.value
                                              for w in at.warning) and at),
                    timeout=30, interval=0.2, what="the cancelled run")
    assert not at.exception and not at.error
    assert not at.button(key="train_go").proto.disabled
    assert not any(s.value == "Last training run" for s in at.subheader)


def test_a_deploy_no_worker_took_is_an_error_not_a_success(
        gate: _Gate, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the page keeps deployed models under .nadg/models
    gate.opened.set()
    at = AppTest.from_string(PAGE, default_timeout=60).run()
    at.radio(key="train_source").set_value("tickets_labelled.csv").run()
    at.number_input(key="train_rounds").set_value(1).run()
    at.button(key="train_go").click().run()
    at = wait_until(lambda: (at.run() and any(s.value == "Last training run"
                                              for s in at.subheader) and at),
                    timeout=120, interval=0.2, what="the text head to train")
    # Deploy runs in the background too: held on the worker, the page stays responsive.
    gate.opened.clear()
    held = gate.held
    at.button(key="train_deploy").click().run()
    assert not at.exception and at.button(key="train_deploy").proto.disabled
    assert any("Publishing" in i.value for i in at.info)
    wait_until(lambda: gate.held > held, timeout=30, what="the deploy call to be held")
    gate.opened.set()
    at = wait_until(lambda: (at.run() and any("is on workers" in s.value for s in at.success)
                             and at), timeout=60, interval=0.2, what="the deployment")
    gate.refuse = True
    at.button(key="train_deploy").click().run()
    at = wait_until(lambda: (at.run() and (at.error or at.success) and at), timeout=60,
                    interval=0.2, what="the refused deployment")
    assert not at.exception and not at.success
    assert any("no worker took it" in e.value for e in at.error)
    assert any("refused by the test" in w.value for w in at.warning)


def test_an_upload_leaves_no_temp_file_and_a_bad_csv_is_a_message(
        registry: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    at = AppTest.from_string(PAGE, default_timeout=30).run()
    csv = (REPO_ROOT / "examples" / "tickets_labelled.csv").read_bytes()
    at.file_uploader(key="train_upload").upload("tickets_labelled.csv", csv, "text/csv")
    at.run()
    at.number_input(key="train_rounds").set_value(2).run()
    assert not at.exception and not at.error
    assert at.selectbox(key="train_label").value == "label"
    assert list(scratch.iterdir()) == []  # nothing left behind by the reruns
    at.file_uploader(key="train_upload").upload("broken.csv", b"\xff\xfe\x00\x81", "text/csv")
    at.run()
    assert not at.exception
    assert any("Cannot read broken.csv as a CSV" in e.value for e in at.error)
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize(("option", "value"), [("--rounds", "0"), ("--rounds", "-2"),
                                               ("--local-epochs", "0"), ("--non-iid", "0")])
def test_cli_train_refuses_numbers_that_train_nothing(
        option: str, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "--data", str(REPO_ROOT / "examples" / "tickets_labelled.csv"),
                 "--label-column", "label", option, value])
    assert code == 2 and f"{value} must be above 0" in capsys.readouterr().err
