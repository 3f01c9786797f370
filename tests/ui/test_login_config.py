"""The login's parts without Streamlit: password hashes, the throttle, the config rules,
the hash command, and scripts/grid.py refusing to expose a master without a login."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from master_app.settings import MasterSettings
from master_app.ui import passwords
from master_app.ui.auth_config import (
    AuthConfigError,
    OidcConfig,
    Role,
    is_loopback,
    read_oidc_section,
    resolve_auth,
)
from master_app.ui.passwords import (
    PasswordHashError,
    PlainSecret,
    hash_password,
    parse_hash,
)
from master_app.ui.throttle import LoginThrottle
from nexus_common.cli import ExitCode

REPO = Path(__file__).resolve().parents[2]
GOOD = "a-long-enough-password"
OIDC = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "c" * 40,
        "client_id": "nexus", "client_secret": "s3cret",
        "server_metadata_url": "https://id.example.com/.well-known/openid-configuration"}


def _settings(**env: str) -> MasterSettings:
    return MasterSettings.model_validate(env)


# --- password hashes -------------------------------------------------------------------

def test_a_hash_verifies_its_password_only() -> None:
    encoded = hash_password(GOOD)
    assert encoded.startswith("scrypt$32768$8$1$")
    assert GOOD not in encoded
    parsed = parse_hash(encoded)
    assert parsed.matches(GOOD)
    assert not parsed.matches(GOOD + "x") and not parsed.matches("") and not parsed.matches(
        GOOD.upper())
    assert hash_password(GOOD) != encoded  # a fresh salt each time


def test_short_passwords_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 12"):
        hash_password("elevenchars")


@pytest.mark.parametrize(("text", "expected"), [
    ("", "not in the form"),
    ("$2b$12$abcdefghijklmnopqrstuv", "not in the form"),  # a bcrypt hash
    ("scrypt$x$8$1$AAAA$BBBB", "whole numbers"),
    ("scrypt$1024$8$1$AAAAAAAAAAAAAAAAAAAAAA$" + "A" * 43, "power of two"),  # too cheap
    ("scrypt$16385$8$1$AAAAAAAAAAAAAAAAAAAAAA$" + "A" * 43, "power of two"),
    ("scrypt$16384$99$1$AAAAAAAAAAAAAAAAAAAAAA$" + "A" * 43, "r=99"),
    ("scrypt$16384$8$1$AAAA$" + "A" * 43, "at least 16 bytes"),
    ("scrypt$16384$8$1$A$" + "A" * 43, "base64"),
])
def test_malformed_hashes_say_what_is_wrong(text: str, expected: str) -> None:
    with pytest.raises(PasswordHashError, match=expected) as info:
        parse_hash(text, "NADG_UI_PASSWORD_HASH")
    assert "NADG_UI_PASSWORD_HASH" in str(info.value)
    assert "python -m master_app.ui.auth hash" in str(info.value)


def test_comparisons_are_constant_time_over_fixed_length_digests(
        monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[int, int]] = []
    real = passwords.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(passwords.hmac, "compare_digest", spy)
    plain = PlainSecret(GOOD)
    assert plain.matches(GOOD) and not plain.matches("x") and not plain.matches(GOOD * 3)
    assert parse_hash(hash_password(GOOD)).matches(GOOD)
    # Every check went through compare_digest on equal-length digests: the candidate's
    # length and content never decide how long the comparison takes.
    assert len(seen) == 4 and all(a == b == 32 for a, b in seen)
    assert GOOD not in repr(plain)


def test_absurdly_long_candidates_are_refused_unhashed() -> None:
    assert not PlainSecret(GOOD).matches("x" * 10_000)
    assert not parse_hash(hash_password(GOOD)).matches(GOOD + "x" * 10_000)


# --- throttle --------------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_lockout_starts_after_the_free_failures_and_doubles() -> None:
    clock = Clock()
    throttle = LoginThrottle(free_failures=3, base_lockout_s=10, max_lockout_s=35, clock=clock)
    keys = ["session:a", "client:1.2.3.4"]
    assert throttle.failed(keys) == 0 and throttle.failed(keys) == 0
    assert throttle.wait_s(keys) == 0
    assert throttle.failed(keys) == 10  # the third failure locks
    assert throttle.wait_s(keys) == 10
    assert throttle.wait_s(["session:other", "client:1.2.3.4"]) == 10  # a new session: still
    assert throttle.wait_s(["session:other", "client:5.6.7.8"]) == 0   # another address: free
    clock.now += 10
    assert throttle.wait_s(keys) == 0
    assert throttle.failed(keys) == 20  # doubled
    clock.now += 20
    assert throttle.failed(keys) == 35  # capped
    throttle.succeeded(keys)
    assert throttle.wait_s(keys) == 0 and throttle.failures("client:1.2.3.4") == 0


def test_parallel_guesses_are_counted_before_they_are_checked() -> None:
    throttle = LoginThrottle(free_failures=3, base_lockout_s=60)
    start = threading.Barrier(40)
    admitted: list[float] = []

    def guess(n: int) -> None:
        start.wait()  # 40 sessions from one address, all at once
        admitted.append(throttle.attempt([f"session:{n}", "client:6.6.6.6"]))

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(admitted) == 40
    assert admitted.count(0.0) == 3  # only the free tries got to check a password
    assert all(0 < w <= 60 for w in admitted if w)
    throttle.succeeded(["session:0", "client:6.6.6.6"])  # a right password refunds them
    assert throttle.attempt(["session:0", "client:6.6.6.6"]) == 0


def test_failures_are_forgotten_after_a_quiet_hour_and_the_table_is_bounded() -> None:
    clock = Clock()
    throttle = LoginThrottle(free_failures=2, base_lockout_s=5, forget_after_s=60,
                             max_keys=100, clock=clock)
    throttle.failed(["k"])
    clock.now += 61
    assert throttle.failed(["k"]) == 0  # the first failure was forgotten
    for n in range(1000):  # a flood of addresses
        throttle.failed([f"client:{n}"])
    assert len(throttle._records) == 100
    assert throttle.failures("client:999") == 1 and throttle.failures("client:0") == 0


# --- configuration ---------------------------------------------------------------------

@pytest.mark.parametrize(("address", "loopback"), [
    ("127.0.0.1", True), ("127.8.9.1", True), ("localhost", True), ("::1", True),
    ("[::1]", True), ("0.0.0.0", False), ("::", False), ("", False), (None, False),
    ("192.168.1.5", False), ("example.com", False),
])
def test_loopback_addresses(address: str | None, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def test_loopback_without_login_needs_none() -> None:
    config = resolve_auth(_settings(), server_address="127.0.0.1")
    assert not config.login_required


@pytest.mark.parametrize(("env", "address", "expected"), [
    ({}, "0.0.0.0", "bound to 0.0.0.0 with no login"),
    ({}, None, "every interface"),
    ({"NADG_UI_ADDRESS": "10.0.0.2"}, "127.0.0.1", "bound to 10.0.0.2"),
    ({"NADG_UI_PASSWORD": GOOD, "NADG_UI_PASSWORD_HASH": hash_password(GOOD)}, "127.0.0.1",
     "keep one of them"),
    ({"NADG_UI_PASSWORD": GOOD, "NADG_UI_VIEWER_PASSWORD": GOOD}, "127.0.0.1",
     "same as NADG_UI_PASSWORD"),
    ({"NADG_UI_PASSWORD": GOOD, "NADG_UI_VIEWER_PASSWORD": "short"}, "127.0.0.1",
     "NADG_UI_VIEWER_PASSWORD is 5 characters"),
    ({"NADG_UI_VIEWERS": "@example.com"}, "127.0.0.1", "no [auth] section"),
])
def test_config_errors_say_what_to_set(env: dict[str, str], address: str | None,
                                       expected: str) -> None:
    with pytest.raises(AuthConfigError, match=expected.replace("[", r"\[")) as info:
        resolve_auth(_settings(**env), server_address=address)
    assert GOOD not in str(info.value)


def test_a_non_loopback_master_with_a_password_is_fine() -> None:
    config = resolve_auth(_settings(NADG_UI_PASSWORD=GOOD), server_address="0.0.0.0")
    assert config.login_required and config.operator is not None and config.operator.matches(
        GOOD)


@pytest.mark.parametrize(("section", "expected"), [
    ({k: v for k, v in OIDC.items() if k != "cookie_secret"}, "missing cookie_secret"),
    ({**OIDC, "cookie_secret": "short"}, "shorter than 32"),
    ({"redirect_uri": OIDC["redirect_uri"], "cookie_secret": OIDC["cookie_secret"]},
     "names no OIDC provider"),
    ({"redirect_uri": OIDC["redirect_uri"], "cookie_secret": OIDC["cookie_secret"],
      "google": {"client_id": "x"}}, "[auth.google] client_secret"),
])
def test_half_set_oidc_is_an_error(section: dict[str, Any], expected: str) -> None:
    with pytest.raises(AuthConfigError, match=expected.replace("[", r"\[")):
        resolve_auth(_settings(NADG_UI_OPERATORS="op@example.com"), server_address="0.0.0.0",
                     oidc_section=section)


def test_oidc_needs_an_operator_and_authlib() -> None:
    with pytest.raises(AuthConfigError, match="NADG_UI_OPERATORS"):
        resolve_auth(_settings(), server_address="0.0.0.0", oidc_section=OIDC)
    with pytest.raises(AuthConfigError, match="Authlib"):
        resolve_auth(_settings(NADG_UI_OPERATORS="op@example.com"), server_address="0.0.0.0",
                     oidc_section=OIDC, authlib_installed=False)
    config = resolve_auth(_settings(NADG_UI_OPERATORS="op@example.com"),
                          server_address="0.0.0.0",
                          oidc_section={**OIDC, "okta": {"client_id": "a", "client_secret": "b",
                                                         "server_metadata_url": "https://o"}})
    assert config.oidc is not None and config.oidc.providers == (None, "okta")


def test_oidc_roles() -> None:
    oidc = OidcConfig((None,), operators=frozenset({"op@example.com", "@ops.example.com"}),
                      viewers=frozenset({"@example.com"}))
    assert oidc.role_for("Op@Example.com") is Role.OPERATOR
    assert oidc.role_for("anyone@ops.example.com") is Role.OPERATOR
    assert oidc.role_for("dev@example.com") is Role.VIEWER
    assert oidc.role_for("dev@example.com.evil.test") is None  # not a suffix match
    assert oidc.role_for("mallory@evil.test") is None
    assert oidc.role_for("op@example.com", email_verified=False) is None
    assert oidc.role_for(None) is None
    assert OidcConfig((None,)).role_for("anyone@anywhere.test") is Role.VIEWER


def test_read_oidc_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert read_oidc_section(tmp_path) is None
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text(
        '[auth]\nredirect_uri = "http://x/oauth2callback"\n[auth.google]\nclient_id = "a"\n')
    section = read_oidc_section(tmp_path)
    assert section is not None and section["google"]["client_id"] == "a"


# --- the hash command and the launcher -------------------------------------------------

def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NADG_UI_")}
    env.update(PYTHONPATH=str(REPO), **extra)
    return env


def test_the_hash_command_prints_a_hash_the_master_accepts() -> None:
    done = subprocess.run([sys.executable, "-m", "master_app.ui.auth", "hash"], input=GOOD + "\n",
                          capture_output=True, text=True, cwd=REPO, env=_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    assert parse_hash(line).matches(GOOD)
    config = resolve_auth(_settings(NADG_UI_PASSWORD_HASH=line), server_address="0.0.0.0")
    assert config.operator is not None and config.operator.matches(GOOD)

    short = subprocess.run([sys.executable, "-m", "master_app.ui.auth", "hash"], input="short\n",
                           capture_output=True, text=True, cwd=REPO, env=_env(), timeout=60)
    assert short.returncode == 2 and "at least 12" in short.stderr and not short.stdout


@pytest.mark.parametrize(("extra", "expected"), [
    ({}, "with no login"),
    ({"NADG_UI_PASSWORD": "short"}, "at least 12"),
])
def test_the_grid_refuses_to_expose_a_master_without_a_login(
        tmp_path: Path, extra: dict[str, str], expected: str) -> None:
    registry = tmp_path / "registry.db"
    done = subprocess.run(
        [sys.executable, "-m", "scripts.grid", "--workers", "1", "--ui", "--ui-address",
         "0.0.0.0", "--registry", str(registry)],
        capture_output=True, text=True, cwd=REPO, env=_env(**extra), timeout=120)
    assert done.returncode == ExitCode.USAGE, done.stderr
    assert expected in done.stderr
    assert "NADG_UI_PASSWORD" in done.stderr
    assert not registry.exists()  # refused before anything started
    assert "worker" not in done.stdout
