"""The master's login in AppTest: the whole app (master_app/app.py) behind the sign-in.

Environment variables are set per test (the conftest clears Streamlit's caches, so the
settings and the throttle are rebuilt); the bind address is Streamlit's own config option.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import streamlit
from streamlit import config
from streamlit.testing.v1 import AppTest

from database.models import NewSubtask, TaskStatus, WorkerStatus
from database.store import Store
from master_app.ui.auth import Identity
from master_app.ui.auth_config import Role
from master_app.ui.passwords import hash_password

APP = Path(__file__).resolve().parents[2] / "master_app" / "app.py"
OPERATOR_PW = "operator-password-1"
VIEWER_PW = "viewer-password-22"
LOGIN_TITLE = "Sign in to NEXUS Grid"
UI_VARS = ("NADG_UI_PASSWORD", "NADG_UI_PASSWORD_HASH", "NADG_UI_VIEWER_PASSWORD",
           "NADG_UI_VIEWER_PASSWORD_HASH", "NADG_UI_OPERATORS", "NADG_UI_VIEWERS",
           "NADG_UI_ADDRESS", "NADG_UI_LOGIN_FAILURES", "NADG_UI_LOGIN_LOCKOUT_S")
OIDC = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "c" * 40,
        "client_id": "nexus", "client_secret": "s3cret",
        "server_metadata_url": "https://id.example.com/.well-known/openid-configuration"}


@pytest.fixture(autouse=True)
def _clean_ui_env(monkeypatch: pytest.MonkeyPatch, registry_path: Path) -> None:
    for var in UI_VARS:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NADG_UI_PASSWORD", OPERATOR_PW)
    monkeypatch.setenv("NADG_UI_VIEWER_PASSWORD", VIEWER_PW)


@pytest.fixture
def bound_to() -> Iterator[Any]:
    """Set Streamlit's server.address for one test (restored after)."""
    saved = config.get_option("server.address")
    yield lambda address: config.set_option("server.address", address)
    config.set_option("server.address", saved)


def _app() -> AppTest:
    return AppTest.from_file(str(APP), default_timeout=30)


def _sign_in(at: AppTest, password: str) -> AppTest:
    at.text_input(key="login_password").input(password)
    [button] = [b for b in at.button if b.label == "Sign in"]
    return button.click().run()


def _only_the_login(at: AppTest) -> None:
    assert not at.exception
    assert [t.value for t in at.title] == [LOGIN_TITLE]
    assert not at.text_area  # no command box: no page rendered
    assert not any("Registry" in m.value for m in at.sidebar.markdown)


def _texts(elements: Any) -> str:
    return " ".join(e.value for e in elements)


def test_a_password_shows_only_the_login(passwords: None) -> None:
    at = _app().run()
    _only_the_login(at)
    assert not at.error


def test_a_wrong_password_is_refused(passwords: None) -> None:
    at = _sign_in(_app().run(), "not-the-password")
    _only_the_login(at)
    assert "Wrong password." in _texts(at.error)


def test_the_right_password_shows_the_pages_as_operator(passwords: None) -> None:
    at = _sign_in(_app().run(), OPERATOR_PW)
    assert not at.exception
    assert at.title[0].value == "Run a task"
    assert at.text_area(key="run_command") is not None
    side = _texts(at.sidebar.markdown)
    assert "**Signed in** as **operator**" in side and "**Registry:**" in side
    assert OPERATOR_PW not in side
    # Later runs of the same session stay signed in; Sign out ends it.
    at.run()
    assert at.title[0].value == "Run a task"
    at.button(key="sign_out").click().run()
    _only_the_login(at)


def test_a_password_hash_works_like_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NADG_UI_PASSWORD_HASH", hash_password(OPERATOR_PW))
    at = _sign_in(_app().run(), OPERATOR_PW[:-1])
    _only_the_login(at)
    at = _sign_in(at, OPERATOR_PW)
    assert at.title[0].value == "Run a task"


def test_a_viewer_sees_workers_but_no_operator_controls(passwords: None, store: Store) -> None:
    worker = store.add_worker("http://127.0.0.1:9/login-test", status=WorkerStatus.OFFLINE)
    operator_only = {"remove", "drain", "activate", "ping_one", "ping_all"}
    try:
        script = "from master_app.ui.workers_page import workers_page\nworkers_page()\n"
        op = AppTest.from_string(script, default_timeout=30)
        op.session_state["nadg_identity"] = Identity("operator", Role.OPERATOR, "password",
                                                     time.time())
        op.run()
        assert operator_only <= {b.key for b in op.button}  # what the viewer must not get
        assert "Add worker" in {b.label for b in op.button}

        at = _sign_in(_app().run(), VIEWER_PW)  # the whole app, signed in as a viewer
        assert not at.exception
        assert at.title[0].value == "Workers"  # no Run page: Workers comes first
        assert "**Signed in** as **viewer**" in _texts(at.sidebar.markdown)
        assert any("login-test" in str(v) for v in at.dataframe[0].value["url"])
        assert not {b.key for b in at.button} & operator_only
        assert "Add worker" not in {b.label for b in at.button}
    finally:
        store.remove_worker(worker.id)


def test_the_history_page_hides_rerun_and_resume_from_a_viewer(
        passwords: None, store: Store) -> None:
    task = store.create_task("noop 1", {"operation": "noop", "params": {"count": 1}},
                             [NewSubtask(idx=0, kind="noop", payload={"kind": "noop", "echo": 0,
                                                                      "rows": [0]})])
    script = "from master_app.ui.history_page import history_page\nhistory_page()\n"
    try:
        shown = {}
        for role in (Role.OPERATOR, Role.VIEWER):
            at = AppTest.from_string(script, default_timeout=30)
            at.session_state["nadg_identity"] = Identity(str(role), role, "password", time.time())
            at.run()
            at.text_input(key="history_search").input(task.id).run()  # one match opens it
            assert not at.exception
            shown[role] = {b.key for b in at.button}
        assert {f"rerun_{task.id}", f"resume_{task.id}", "resume_all"} <= shown[Role.OPERATOR]
        assert not {f"rerun_{task.id}", f"resume_{task.id}", "resume_all"} & shown[Role.VIEWER]
    finally:
        store.set_task_status(task.id, TaskStatus.FAILED, error="login test")


def test_a_page_shown_to_a_viewer_by_url_still_refuses_to_run(passwords: None) -> None:
    for page in ("run_page", "training"):
        module = "master_app.ui." + page
        func = "run_page" if page == "run_page" else "training_page"
        at = AppTest.from_string(f"from {module} import {func}\n{func}()\n", default_timeout=30)
        at.session_state["nadg_identity"] = Identity("viewer", Role.VIEWER, "password", time.time())
        at.run()
        assert not at.exception
        assert "for operators" in _texts(at.info)
        assert not [b for b in at.button if b.label in ("Plan", "Run", "Train")]


def test_a_burst_of_wrong_passwords_is_throttled(passwords: None,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NADG_UI_LOGIN_FAILURES", "3")
    monkeypatch.setenv("NADG_UI_LOGIN_LOCKOUT_S", "120")
    at = _app().run()
    for n in range(3):
        at = _sign_in(at, f"guess-number-{n}")
    assert "Too many failed sign-ins: wait 120 s" in _texts(at.error)
    # Locked: even the right password is refused, unchecked.
    at = _sign_in(at, OPERATOR_PW)
    _only_the_login(at)
    assert "Too many failed sign-ins: wait" in _texts(at.error)
    # A new browser session from the same address is locked too.
    fresh = _sign_in(_app().run(), OPERATOR_PW)
    _only_the_login(fresh)
    assert "Too many failed sign-ins" in _texts(fresh.error)


def test_no_login_on_loopback_says_so_in_the_sidebar() -> None:
    at = _app().run()
    assert not at.exception
    assert at.title[0].value == "Run a task"
    assert "No login (loopback)" in _texts(at.sidebar.warning)


@pytest.mark.parametrize("where", ["server.address", "NADG_UI_ADDRESS"])
def test_a_non_loopback_address_without_login_refuses_to_start(
        where: str, bound_to: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    if where == "server.address":
        bound_to("0.0.0.0")
    else:
        monkeypatch.setenv("NADG_UI_ADDRESS", "192.0.2.10")
    at = _app().run()
    assert not at.exception
    assert not at.title and not at.text_input and not at.button  # nothing but the error
    [error] = at.error
    assert "The master cannot start" in error.value and "with no login" in error.value
    assert "NADG_UI_PASSWORD" in error.value and "127.0.0.1" in error.value


def test_unset_server_address_means_every_interface(bound_to: Any) -> None:
    bound_to(None)
    at = _app().run()
    [error] = at.error
    assert "every interface" in error.value


def test_a_non_loopback_address_with_a_password_shows_the_login(passwords: None,
                                                                 bound_to: Any) -> None:
    bound_to("0.0.0.0")
    _only_the_login(_app().run())


@pytest.mark.parametrize(("env", "expected"), [
    ({"NADG_UI_PASSWORD": "short"}, "at least 12"),
    ({"NADG_UI_PASSWORD_HASH": "scrypt$16384$8$1$nope"}, "python -m master_app.ui.auth hash"),
    ({"NADG_UI_VIEWER_PASSWORD": VIEWER_PW}, "without an operator login"),
    ({"NADG_UI_OPERATORS": "op@example.com"}, "no [auth] section"),
])
def test_half_set_login_config_is_an_error_saying_what_to_fix(
        env: dict[str, str], expected: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    at = _app().run()
    assert not at.exception
    assert not at.title and not at.text_input
    [error] = at.error
    assert expected in error.value
    assert "short" not in error.value.split("NADG_UI_PASSWORD", 1)[0]  # never the secret


def _oidc_app(user: dict[str, Any]) -> AppTest:
    at = _app()
    at.secrets["auth"] = dict(OIDC)
    at.user = user
    return at


def test_oidc_in_secrets_offers_st_login(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NADG_UI_OPERATORS", "op@example.com")
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(streamlit, "login", lambda *args: calls.append(args))
    at = _oidc_app({"is_logged_in": False}).run()
    _only_the_login(at)
    assert not at.text_input  # no password form: OIDC only
    at.button(key="login_oidc_default").click().run()
    assert calls == [()]


@pytest.mark.parametrize(("user", "title", "role"), [
    ({"is_logged_in": True, "email": "OP@example.com"}, "Run a task", "operator"),
    ({"is_logged_in": True, "email": "someone@example.org"}, "Workers", "viewer"),
])
def test_oidc_users_get_roles_from_the_operator_list(
        user: dict[str, Any], title: str, role: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NADG_UI_OPERATORS", "op@example.com")
    at = _oidc_app(user).run()
    assert not at.exception
    assert at.title[0].value == title
    assert f"· **{role}**" in _texts(at.sidebar.markdown)


def test_oidc_refuses_an_unverified_or_unlisted_email(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NADG_UI_OPERATORS", "op@example.com")
    at = _oidc_app({"is_logged_in": True, "email": "op@example.com",
                    "email_verified": False}).run()
    _only_the_login(at)
    assert "may not use this master" in _texts(at.error)
    monkeypatch.setenv("NADG_UI_VIEWERS", "@example.com")
    streamlit.cache_resource.clear()
    at = _oidc_app({"is_logged_in": True, "email": "mallory@evil.example"}).run()
    _only_the_login(at)
    assert "may not use this master" in _texts(at.error)


def test_oidc_sign_out_ends_the_sign_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NADG_UI_OPERATORS", "op@example.com")
    at = _oidc_app({"is_logged_in": True, "email": "op@example.com"}).run()
    assert at.title[0].value == "Run a task"
    at.button(key="sign_out").click().run()
    assert at.user.get("is_logged_in") is False
    _only_the_login(at.run())
