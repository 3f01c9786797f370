"""The master's login: the sign-in form, who is signed in, and what their role lets them do.

``app.py`` calls :func:`require_login` before anything else: it returns the signed-in
:class:`Identity`, or shows only the login (or, when the login is misconfigured, only an
error saying what to set) and returns None. Pages ask :func:`can_operate` before they show
an operator's control (Run, Cancel, Add, Remove, Drain, Train, Deploy). What the
environment must hold is decided in :mod:`master_app.ui.auth_config`.

Passwords are checked in constant time (:mod:`master_app.ui.passwords`) and failures are
throttled per browser session and per client address (:mod:`master_app.ui.throttle`).
A password sign-in lasts for the browser session (a reload asks again), at most
:data:`SESSION_MAX_S`; an OIDC sign-in lasts as long as Streamlit's identity cookie.

Make a hash for ``NADG_UI_PASSWORD_HASH`` with ``python -m master_app.ui.auth hash``.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import streamlit as st

from master_app.ui.auth_config import (
    AuthConfig,
    AuthConfigError,
    Role,
    describe_address,
    resolve_auth,
)
from master_app.ui.resources import get_settings
from master_app.ui.throttle import LoginThrottle
from nexus_common.addresses import throttle_key as address_key
from nexus_common.cli import new_app, run_app

logger = logging.getLogger(__name__)

#: Session state: the password sign-in of this browser session, and its throttle key.
SESSION_KEY = "nadg_identity"
SESSION_ID_KEY = "nadg_login_session"
#: A password sign-in ends after this long, even in an open tab.
SESSION_MAX_S = 12 * 3600.0
VIEWER_NOTICE = "Viewers see tasks, results and workers; an operator runs and changes them."


@dataclass(frozen=True)
class Identity:
    """Who is using this session: a name to show, a role, and how they signed in."""

    name: str
    role: Role
    method: str  # "password", "oidc" or "loopback" (no login)
    since: float = 0.0

    @property
    def can_operate(self) -> bool:
        """True for an operator: runs tasks, manages workers, trains."""
        return self.role is Role.OPERATOR


def _oidc_section() -> Mapping[str, Any] | None:
    """The ``[auth]`` section of Streamlit's secrets, when there is one."""
    if not st.secrets.load_if_toml_exists():
        return None
    section = st.secrets.get("auth")
    return section if isinstance(section, Mapping) and section else None


def auth_config() -> AuthConfig:
    """This master's login, from its settings, secrets and bind address (or an error)."""
    from streamlit.auth_util import is_authlib_installed

    return resolve_auth(get_settings(), server_address=st.get_option("server.address"),
                        oidc_section=_oidc_section(), authlib_installed=is_authlib_installed())


def _get_throttle() -> LoginThrottle:
    settings = get_settings()
    return LoginThrottle(free_failures=settings.ui_login_free_failures,
                         base_lockout_s=settings.ui_login_lockout_s)


#: One throttle for the whole server: every session and client address shares it.
get_throttle: Callable[[], LoginThrottle] = st.cache_resource(show_spinner=False)(_get_throttle)


def _identity(config: AuthConfig) -> Identity | None:
    """The identity of this session under ``config``, or None when nobody is signed in."""
    if not config.login_required:
        return Identity("local user", Role.OPERATOR, "loopback")
    saved = st.session_state.get(SESSION_KEY)
    if isinstance(saved, Identity):
        if time.time() - saved.since < SESSION_MAX_S:
            return saved
        st.session_state.pop(SESSION_KEY, None)
    if config.oidc is not None and st.user.get("is_logged_in") is True:
        email = st.user.get("email")
        role = config.oidc.role_for(email if isinstance(email, str) else None,
                                    st.user.get("email_verified"))
        if role is not None:
            return Identity(str(email), role, "oidc")
    return None


def current_identity() -> Identity | None:
    """Who is signed in to this session (None also when the login is misconfigured)."""
    try:
        return _identity(auth_config())
    except AuthConfigError:
        return None


def can_operate() -> bool:
    """True when this session may run tasks, manage workers, train and deploy."""
    identity = current_identity()
    return identity is not None and identity.can_operate


def _throttle_keys() -> list[str]:
    session = st.session_state.setdefault(SESSION_ID_KEY, secrets.token_hex(16))
    ip = st.context.ip_address  # the TCP peer (None on loopback)
    client = address_key(ip) if isinstance(ip, str) and ip else "loopback"
    return [f"session:{session}", f"client:{client}"]


def _wait_message(wait_s: float) -> str:
    return (f"Too many failed sign-ins: wait {math.ceil(wait_s)} s before trying again "
            "(each further failure doubles the wait).")


def _password_attempt(config: AuthConfig, password: str) -> Identity | None:
    """Check one typed password (unless throttled); returns the identity it signs in."""
    if not password:
        st.warning("Type the password first.")
        return None
    throttle, keys = get_throttle(), _throttle_keys()
    wait = throttle.attempt(keys)  # counted as failed until the password proves right
    if wait > 0:
        logger.warning("sign-in refused while throttled (%s)", keys[1])
        st.error(_wait_message(wait))
        return None
    # Both are checked every time, so the timing does not tell which one matched.
    is_operator = config.operator is not None and config.operator.matches(password)
    is_viewer = config.viewer is not None and config.viewer.matches(password)
    if not (is_operator or is_viewer):
        lockout = throttle.wait_s(keys)
        logger.warning("failed sign-in (%s, %d in a row)", keys[1], throttle.failures(keys[1]))
        st.error("Wrong password." + (" " + _wait_message(lockout) if lockout else ""))
        return None
    if is_operator:
        throttle.succeeded(keys)
    else:
        throttle.refund(keys)
    role = Role.OPERATOR if is_operator else Role.VIEWER
    logger.info("signed in as %s (%s)", role, keys[1])
    return Identity(str(role), role, "password", since=time.time())


def login_ui(config: AuthConfig) -> None:
    """The sign-in screen: a password form and/or a button per OIDC provider."""
    with st.columns([2, 3])[0]:
        _login_form_ui(config)


def _login_form_ui(config: AuthConfig) -> None:
    st.title("Sign in to NEXUS Grid")
    if config.oidc is not None:
        for provider in config.oidc.providers:
            label = f"Sign in with {provider.title()}" if provider else "Sign in with SSO"
            if st.button(label, key=f"login_oidc_{provider or 'default'}", type="primary"):
                if provider:
                    st.login(provider)
                else:
                    st.login()
        if st.user.get("is_logged_in") is True:  # signed in, but no role here
            st.error(f"{st.user.get('email') or 'This account'} may not use this master (an "
                     "unverified email, or not in NADG_UI_VIEWERS / NADG_UI_OPERATORS).")
            if st.button("Sign out", key="login_oidc_logout"):
                st.logout()
    if config.operator is not None or config.viewer is not None:
        with st.form("login_form", clear_on_submit=True):
            password = st.text_input("Password", type="password", key="login_password",
                                     autocomplete="current-password")
            submitted = st.form_submit_button("Sign in", type="primary")
        if submitted:
            identity = _password_attempt(config, password)
            if identity is not None:
                st.session_state[SESSION_KEY] = identity
                st.rerun()


def require_login() -> Identity | None:
    """The signed-in identity; otherwise shows only the login (or the config error)."""
    try:
        config = auth_config()
    except AuthConfigError as exc:
        logger.error("the master cannot start: %s", exc)
        st.error(f"The master cannot start: {exc}.")
        return None
    identity = _identity(config)
    if identity is None:
        login_ui(config)
    return identity


def sign_out() -> None:
    """End this session's sign-in (and the OIDC cookie when signed in through OIDC)."""
    identity = st.session_state.pop(SESSION_KEY, None)
    if identity is None and st.user.get("is_logged_in") is True:
        st.logout()  # deletes the identity cookie and reloads the app
        return
    st.rerun()


def auth_sidebar_ui() -> None:
    """Who is signed in, their role and a Sign out button; or the no-login notice."""
    try:
        config = auth_config()
    except AuthConfigError:
        return
    identity = _identity(config)
    if identity is None:
        return
    if identity.method == "loopback":
        st.warning(f"**No login (loopback):** bound to {describe_address(config.address)}; "
                   "anyone who can reach this port on this machine can operate the grid. Set "
                   "NADG_UI_PASSWORD before exposing it.")
        return
    if identity.method == "password":
        st.markdown(f"**Signed in** as **{identity.role}** (password)")
    else:
        st.markdown(f"**Signed in:** {identity.name} · **{identity.role}**")
    if not identity.can_operate:
        st.caption(VIEWER_NOTICE)
    if st.button("Sign out", key="sign_out"):
        sign_out()


def _login_commands() -> None:
    """The master's login (a group, so that ``hash`` stays a subcommand)."""


def main(argv: list[str] | None = None) -> int:
    """``python -m master_app.ui.auth hash``: print a hash for NADG_UI_PASSWORD_HASH
    (the same as ``nexus hash-password``)."""
    from master_app.cli.password import hash_password_command

    app = new_app("The master's login.")
    app.command("hash", help="Read a password, print its scrypt hash.")(hash_password_command)
    app.callback()(_login_commands)
    return run_app(app, argv, prog_name="python -m master_app.ui.auth")


if __name__ == "__main__":
    raise SystemExit(main())
