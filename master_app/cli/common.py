"""What every master command shares: logging, settings, one-line errors, exit codes."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from pydantic import ValidationError

from database.store import StoreConfigError, StoreUnavailable
from master_app.service import USER_ERRORS, GridCancelled
from master_app.settings import MasterSettings
from nexus_common.cli import ExitCode

logger = logging.getLogger(__name__)

_state = {"verbose": False, "configured": False}


def setup_logging(verbose: bool | None = None) -> None:
    """Log to stderr: warnings, or everything from INFO with ``-v`` (``NADG_LOG_LEVEL``
    overrides both). Called once per process; a later call with ``verbose`` raises it."""
    if verbose is not None:
        _state["verbose"] = _state["verbose"] or verbose
    level = logging.INFO if _state["verbose"] else logging.WARNING
    chosen = os.environ.get("NADG_LOG_LEVEL", logging.getLevelName(level))
    if not _state["configured"]:
        logging.basicConfig(level=chosen,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        _state["configured"] = True
    else:
        logging.getLogger().setLevel(chosen)


def say(message: str) -> None:
    """One line for the person on stderr (progress notes; the result goes to stdout)."""
    sys.stderr.write(message.rstrip("\n") + "\n")
    sys.stderr.flush()


def fail(message: str, code: int = ExitCode.USAGE) -> typer.Exit:
    """Say ``error: message`` (one line) and return the :class:`typer.Exit` to raise."""
    say(f"error: {message}")
    return typer.Exit(code)


#: Settings whose value must never be echoed back (into a terminal, a CI log, a ticket).
_SECRET_WORDS = ("token", "key", "password", "secret", "credential", "hash")


def _shown(name: str, value: object) -> str:
    if any(word in name.lower() for word in _SECRET_WORDS):
        return f"{name} (value hidden)"
    return f"{name}={value!r}"


def settings_error(exc: ValidationError) -> str:
    """One line naming each environment variable whose value is not valid (never the
    value of a secret)."""
    parts = [f"{_shown('.'.join(map(str, err['loc'])) or '?', err.get('input'))}: "
             f"{err['msg'].removeprefix('Value error, ')}"
             for err in exc.errors()]
    return "bad setting in the environment: " + "; ".join(parts) + "; fix or unset it."


def load_settings() -> MasterSettings:
    """The master's settings from the environment, or exit 2 with the one-line reason."""
    try:
        return MasterSettings()
    except ValidationError as exc:
        raise fail(settings_error(exc)) from None


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Turn the errors a person can act on into one line and exit status 2 (3 when the
    registry cannot be reached), Ctrl-C into 130, and anything unexpected into one line
    and status 1 (the traceback is logged, shown with ``-v``). :class:`typer.Exit`
    passes through."""
    try:
        yield
    except typer.Exit:
        raise
    except (KeyboardInterrupt, GridCancelled):
        say("interrupted")
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    except StoreUnavailable as exc:
        code = ExitCode.USAGE if isinstance(exc, StoreConfigError) else ExitCode.UNAVAILABLE
        raise fail(str(exc), code) from None
    except USER_ERRORS as exc:
        raise fail(str(exc)) from None
    except Exception as exc:
        logger.info("unexpected error", exc_info=True)
        raise fail(f"unexpected {type(exc).__name__}: {exc} (run with -v for details)",
                   ExitCode.FAILED) from None
