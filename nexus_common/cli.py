"""One set of exit codes and one way to run a typer command line, for every NEXUS CLI.

Every command line of the project (``nexus``, ``python -m master_app``,
``python -m database.manage_workers``, ``python -m scripts.heartbeat``) runs through
:func:`run_app`, so they agree on what an exit code means and on how a mistake is shown:
one line on stderr, ``error: <what was wrong and what to do>``, never a traceback or a
usage box.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from enum import IntEnum

import typer

logger = logging.getLogger(__name__)


class ExitCode(IntEnum):
    """What a NEXUS command's exit status means."""

    OK = 0
    FAILED = 1  #: the work ran and failed, or the request was refused (unknown id, duplicate)
    USAGE = 2  #: bad input: nothing was started or written
    UNAVAILABLE = 3  #: the registry / store could not be reached
    INTERRUPTED = 130  #: Ctrl-C


class CliError(Exception):
    """A failure a command reports as one line and an exit code.

    Raise it (or a subclass) from a command: :func:`run_app` prints ``error: <message>``
    on stderr and exits with ``code``.
    """

    def __init__(self, message: str, code: ExitCode = ExitCode.FAILED) -> None:
        super().__init__(message)
        self.code = code


class UsageError(CliError):
    """Bad command-line input; the message says what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(message, ExitCode.USAGE)


def new_app(help_text: str) -> typer.Typer:
    """A typer app set up the same way for every CLI (plain output, no rich tracebacks)."""
    return typer.Typer(help=help_text, no_args_is_help=True, add_completion=False,
                       pretty_exceptions_enable=False, rich_markup_mode=None)


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.strip().splitlines() if part.strip())


def run_app(app: typer.Typer, argv: Sequence[str] | None = None,
            prog_name: str | None = None) -> int:
    """Run ``app`` on ``argv`` (default: ``sys.argv[1:]``); return the exit code.

    Click's usage errors, :class:`CliError` and Ctrl-C become one line on stderr and an
    :class:`ExitCode`; ``--help`` prints help and returns 0.
    """
    command = typer.main.get_command(app)
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = command.main(args=args, prog_name=prog_name, standalone_mode=False)
    except CliError as exc:
        sys.stderr.write(f"error: {_one_line(str(exc))}\n")
        return exc.code
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        sys.stderr.write("interrupted\n")
        return ExitCode.INTERRUPTED
    except typer.TyperException as exc:  # typer's (vendored click's) usage errors
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            sys.stderr.write(ctx.get_help() + "\n")
            return ExitCode.USAGE
        hint = f" (see `{prog_name} --help`)" if prog_name else ""
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        sys.stderr.write(f"error: {_one_line(message)}{hint}\n")
        return int(getattr(exc, "exit_code", ExitCode.USAGE))
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return ExitCode.INTERRUPTED
    return int(result) if isinstance(result, int) else ExitCode.OK
