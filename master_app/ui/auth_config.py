"""Which login the master needs, read from its settings, Streamlit's secrets and bind address.

No Streamlit import: ``scripts/grid.py`` runs the same check before it starts Streamlit.

- ``NADG_UI_PASSWORD`` (or its scrypt hash, ``NADG_UI_PASSWORD_HASH``) is the operator's
  password; ``NADG_UI_VIEWER_PASSWORD`` (or ``NADG_UI_VIEWER_PASSWORD_HASH``) a viewer's.
- An ``[auth]`` section in ``.streamlit/secrets.toml`` turns on OIDC (``st.login``); the
  emails (or ``@domains``) in ``NADG_UI_OPERATORS`` are operators, everyone else signed in
  is a viewer, or only those in ``NADG_UI_VIEWERS`` when it is set.
- With none of these, the master runs without a login only on a loopback address; bound
  anywhere else (Streamlit's ``server.address``, unset means every interface, or
  ``NADG_UI_ADDRESS``) it refuses to start, and the message says what to set.

A half-set configuration is an :class:`AuthConfigError` naming what is missing or wrong.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from master_app.settings import MasterSettings
from master_app.ui.passwords import (
    HOW_TO_MAKE,
    PasswordHashError,
    PlainSecret,
    Verifier,
    check_password_strength,
    parse_hash,
)

#: Shared keys of the ``[auth]`` section, and the keys each OIDC provider needs.
OIDC_SHARED_KEYS = ("redirect_uri", "cookie_secret")
OIDC_PROVIDER_KEYS = ("client_id", "client_secret", "server_metadata_url")
MIN_COOKIE_SECRET_CHARS = 32

HOW_TO_LOG_IN = (
    "set NADG_UI_PASSWORD (at least 12 characters) or NADG_UI_PASSWORD_HASH ("
    + HOW_TO_MAKE.removeprefix("make one with ")
    + "), or configure OIDC in an [auth] section of .streamlit/secrets.toml (st.login)")


class Role(StrEnum):
    """What a signed-in person may do."""

    VIEWER = "viewer"      # sees tasks, results and workers
    OPERATOR = "operator"  # also runs and cancels tasks, manages workers, trains, deploys


class AuthConfigError(ValueError):
    """The login is configured in a way the master cannot use; the message says the fix."""


def is_loopback(address: str | None) -> bool:
    """True for ``localhost`` and loopback IPs; unset (every interface) is not loopback."""
    if not address:
        return False
    host = address.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def describe_address(address: str | None) -> str:
    """How a bind address reads in a message."""
    return address if address else "every interface (Streamlit's server.address is unset)"


def _split_list(text: str) -> frozenset[str]:
    return frozenset(e.strip().lower() for e in text.replace(";", ",").replace(" ", ",")
                     .split(",") if e.strip())


def _listed(email: str, entries: frozenset[str]) -> bool:
    domain = "@" + email.rsplit("@", 1)[-1] if "@" in email else None
    return email in entries or (domain is not None and domain in entries)


@dataclass(frozen=True)
class OidcConfig:
    """Sign-in through Streamlit's OIDC (``st.login``) and how emails map to roles."""

    providers: tuple[str | None, ...]  # None: the [auth] section is the provider itself
    operators: frozenset[str] = field(default_factory=frozenset)
    viewers: frozenset[str] = field(default_factory=frozenset)  # empty: anyone signed in

    def role_for(self, email: str | None, email_verified: object = None) -> Role | None:
        """The role of a signed-in email, or None when it may not use this master.

        An email the provider marks unverified gets no role: anyone can put any address on
        an account at some providers.
        """
        if not email or email_verified is False:
            return None
        email = email.strip().lower()
        if _listed(email, self.operators):
            return Role.OPERATOR
        if not self.viewers or _listed(email, self.viewers):
            return Role.VIEWER
        return None


@dataclass(frozen=True)
class AuthConfig:
    """The master's login: who may sign in and how; ``login_required`` False only on loopback."""

    address: str | None
    operator: Verifier | None = None
    viewer: Verifier | None = None
    oidc: OidcConfig | None = None

    @property
    def login_required(self) -> bool:
        """True when the app must show only the login until someone signs in."""
        return self.operator is not None or self.oidc is not None


def read_oidc_section(app_root: Path) -> Mapping[str, Any] | None:
    """The ``[auth]`` section Streamlit will read when started in ``app_root`` (for
    launchers that check the login before Streamlit starts); a broken file counts as none."""
    for path in (app_root / ".streamlit" / "secrets.toml",
                 Path.home() / ".streamlit" / "secrets.toml"):
        try:
            section = tomllib.loads(path.read_text(encoding="utf-8")).get("auth")
        except (OSError, tomllib.TOMLDecodeError):
            continue
        if isinstance(section, Mapping) and section:
            return section
    return None


def authlib_installed() -> bool:
    """Whether Streamlit's OIDC support (Authlib) can be imported."""
    return importlib.util.find_spec("authlib") is not None


def _verifier(settings: MasterSettings, plain_field: str, hash_field: str,
              plain_env: str, hash_env: str) -> Verifier | None:
    plain = getattr(settings, plain_field)
    hashed = getattr(settings, hash_field)
    plain_text = plain.get_secret_value() if plain is not None else ""
    hash_text = hashed.get_secret_value().strip() if hashed is not None else ""
    if plain_text and hash_text:
        raise AuthConfigError(f"both {plain_env} and {hash_env} are set: keep one of them "
                              f"(the hash is the safer one to store)")
    if plain_text:
        try:
            check_password_strength(plain_text, plain_env)
        except ValueError as exc:
            raise AuthConfigError(f"{exc}; or store its hash in {hash_env} ({HOW_TO_MAKE})"
                                  ) from None
        return PlainSecret(plain_text)
    if hash_text:
        try:
            return parse_hash(hash_text, hash_env)
        except PasswordHashError as exc:
            raise AuthConfigError(str(exc)) from None
    return None


def _oidc(section: Mapping[str, Any], authlib_installed: bool) -> tuple[str | None, ...]:
    missing = [k for k in OIDC_SHARED_KEYS if not section.get(k)]
    named = tuple(str(k) for k, v in section.items() if isinstance(v, Mapping))
    providers: tuple[str | None, ...] = ((None,) if section.get("client_id") else ()) + named
    if not providers:
        raise AuthConfigError(
            "the [auth] section of .streamlit/secrets.toml names no OIDC provider: add "
            "client_id, client_secret and server_metadata_url to [auth] (or an "
            "[auth.NAME] section)")
    for provider in providers:
        keys = section if provider is None else section[provider]
        where = "[auth]" if provider is None else f"[auth.{provider}]"
        missing += [f"{where} {k}" for k in OIDC_PROVIDER_KEYS if not keys.get(k)]
    if missing:
        raise AuthConfigError("OIDC is half configured in .streamlit/secrets.toml: missing "
                              + ", ".join(missing))
    if len(str(section["cookie_secret"])) < MIN_COOKIE_SECRET_CHARS:
        raise AuthConfigError(
            f"[auth] cookie_secret in .streamlit/secrets.toml is shorter than "
            f"{MIN_COOKIE_SECRET_CHARS} characters: make one with `python -c 'import "
            "secrets; print(secrets.token_urlsafe(32))'`")
    if not authlib_installed:
        raise AuthConfigError("OIDC is configured in .streamlit/secrets.toml but Authlib is "
                              "not installed: `pip install -r requirements.txt`")
    return providers


def resolve_auth(settings: MasterSettings, *, server_address: str | None,
                 oidc_section: Mapping[str, Any] | None = None,
                 authlib_installed: bool = True) -> AuthConfig:
    """The login this master needs, or an :class:`AuthConfigError` saying what to fix.

    ``server_address`` is where Streamlit listens (its ``server.address``; None or empty
    means every interface); ``oidc_section`` is the ``[auth]`` section of its secrets.
    """
    operator = _verifier(settings, "ui_password", "ui_password_hash",
                         "NADG_UI_PASSWORD", "NADG_UI_PASSWORD_HASH")
    viewer = _verifier(settings, "ui_viewer_password", "ui_viewer_password_hash",
                       "NADG_UI_VIEWER_PASSWORD", "NADG_UI_VIEWER_PASSWORD_HASH")
    plain_op, plain_view = settings.ui_password, settings.ui_viewer_password
    if (plain_op is not None and plain_view is not None
            and plain_op.get_secret_value() == plain_view.get_secret_value()):
        raise AuthConfigError("NADG_UI_VIEWER_PASSWORD is the same as NADG_UI_PASSWORD: a "
                              "viewer would sign in as an operator; choose another")
    operators, viewers = _split_list(settings.ui_operators), _split_list(settings.ui_viewers)
    oidc = None
    if oidc_section:
        oidc = OidcConfig(_oidc(oidc_section, authlib_installed), operators, viewers)
        if not operators and operator is None:
            raise AuthConfigError(
                "OIDC is configured but nobody can operate the grid: list the operators' "
                "emails in NADG_UI_OPERATORS (everyone else signed in is a viewer), or set "
                "NADG_UI_PASSWORD for an operator password")
    elif operators or viewers:
        raise AuthConfigError(
            "NADG_UI_OPERATORS / NADG_UI_VIEWERS list OIDC emails, but .streamlit/secrets.toml "
            "has no [auth] section: configure the OIDC provider there (st.login), or unset them")
    if viewer is not None and operator is None and oidc is None:
        raise AuthConfigError("NADG_UI_VIEWER_PASSWORD is set without an operator login: set "
                              "NADG_UI_PASSWORD (or NADG_UI_PASSWORD_HASH) too")
    config = AuthConfig(address=server_address, operator=operator, viewer=viewer, oidc=oidc)
    exposed = [] if is_loopback(server_address) else [server_address]
    if settings.ui_address and not is_loopback(settings.ui_address):
        exposed.append(settings.ui_address)
    if exposed and not config.login_required:
        raise AuthConfigError(
            f"the master is bound to {describe_address(exposed[0])} with no login, so anyone "
            f"who reaches it could run code on every worker: {HOW_TO_LOG_IN}; or bind it "
            "to 127.0.0.1 (--server.address 127.0.0.1)")
    return config
