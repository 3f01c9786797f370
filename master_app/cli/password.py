"""``nexus hash-password`` (also ``python -m master_app.ui.auth hash``): a login hash.

Reads the password from the terminal (twice), or one line from standard input when it is
not a terminal, and prints its scrypt hash for ``NADG_UI_PASSWORD_HASH`` or
``NADG_UI_VIEWER_PASSWORD_HASH``; the password itself is never printed or logged.
"""

from __future__ import annotations

import getpass
import sys

import typer

from master_app.ui.passwords import hash_password
from nexus_common.cli import UsageError


def hash_password_command() -> None:
    """Read a password, print its scrypt hash for NADG_UI_PASSWORD_HASH."""
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise UsageError("the two passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    try:
        typer.echo(hash_password(password))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
