"""``nexus call URL KIND 'PAYLOAD-JSON'``: one subtask on one worker, signed for you.

Also ``nexus worker-key URL``: the ``NADG_WORKER_KEY`` of one worker, so that worker can
run with its own key instead of the grid secret (a lifted worker then exposes only itself).
Both read the grid secret from ``NADG_AUTH_TOKEN`` (or ``--secret``). The result is printed
as JSON on stdout; exit 0 when the subtask completed, 1 when it ran and did not, 2 for bad
input, 3 when the worker could not be reached or refused.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from nexus_common.call import CallError, call_worker
from nexus_common.cli import CliError, ExitCode, UsageError, new_app, run_app
from nexus_common.signing import WeakSecret, issue_worker_key

app = new_app("Call one worker directly (signed).")

SecretOption = Annotated[str | None, typer.Option(
    "--secret", envvar="NADG_AUTH_TOKEN", show_default=False, show_envvar=True,
    help="the grid secret (default: $NADG_AUTH_TOKEN)")]


def _secret(secret: str | None) -> str:
    if not secret:
        raise UsageError("no grid secret: set NADG_AUTH_TOKEN (or pass --secret)")
    return secret


def _payload(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"PAYLOAD is not JSON ({exc.msg} at column {exc.colno}): give an "
                         "object such as '{\"echo\": 1}'") from None
    if not isinstance(value, dict):
        raise UsageError("PAYLOAD must be a JSON object such as '{\"echo\": 1}'")
    return value


@app.command("call")
def call(url: Annotated[str, typer.Argument(help="the worker's URL")],
         kind: Annotated[str, typer.Argument(help="python, embed, classify, generate, "
                                                  "train or noop")],
         payload: Annotated[str, typer.Argument(help="the payload as a JSON object")],
         secret: SecretOption = None,
         timeout: Annotated[float, typer.Option(help="the subtask's timeout, s")] = 60.0,
         ) -> None:
    """Run one subtask on the worker at URL and print its result as JSON."""
    key = _secret(secret)
    body = _payload(payload)
    try:
        result = call_worker(url, kind, body, key, timeout_s=timeout)
    except (ValueError, WeakSecret) as exc:
        raise UsageError(str(exc)) from None
    except CallError as exc:
        raise CliError(str(exc), ExitCode.UNAVAILABLE) from None
    typer.echo(result.model_dump_json(indent=2))
    if not result.ok:
        raise typer.Exit(ExitCode.FAILED)


@app.command("worker-key")
def worker_key(url: Annotated[str, typer.Argument(help="the worker's URL, as registered")],
               secret: SecretOption = None) -> None:
    """Print NADG_WORKER_KEY for the worker at URL (set it there instead of the secret)."""
    try:
        typer.echo(issue_worker_key(_secret(secret), url))
    except (ValueError, WeakSecret) as exc:
        raise UsageError(str(exc)) from None


def main() -> int:
    """Entry point: ``python -m nexus_ops.call_cli call URL KIND PAYLOAD``."""
    return run_app(app, prog_name="python -m nexus_ops.call_cli")


if __name__ == "__main__":
    raise SystemExit(main())
