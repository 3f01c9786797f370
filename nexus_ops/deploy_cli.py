"""``nexus deploy space OWNER/NAME``: a worker on a Hugging Face Docker Space in one command.

    nexus deploy space alice/nadg-worker [--private] [--hardware cpu-basic]
        [--token HF_TOKEN] [--register/--no-register] [--timeout S]

Reads the grid secret from ``NADG_AUTH_TOKEN`` and the Hugging Face token from ``--token``,
``HF_TOKEN`` or ``hf auth login``. Progress goes to stderr, the summary to stdout. Exit codes
(:class:`nexus_common.cli.ExitCode`): 0 deployed, healthy and registered; 1 the Hub refused,
the Space failed or timed out; 2 bad input (nothing was sent); 3 the Hub or the registry
could not be reached. See docs/deploy.md.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from nexus_common.cli import CliError, ExitCode, UsageError, new_app, run_app

app = new_app("Deploy workers to hosting platforms.")


@app.callback()
def _group() -> None:
    """Deploy workers to hosting platforms (a group, so ``space`` stays a subcommand)."""


def _pairs(values: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not key.strip().replace("_", "").isalnum():
            raise UsageError(f"--var takes KEY=VALUE (e.g. NADG_CAPACITY=4), got {item!r}")
        out[key.strip()] = value
    return out


def _store_secrets() -> dict[str, str]:
    """The store credentials of this shell, for ``--store-secrets``."""
    values = {k: os.environ[k] for k in ("DATABASE_URL", "SUPABASE_URL", "SUPABASE_SERVICE_KEY")
              if os.environ.get(k, "").strip()}
    if not values:
        raise UsageError("--store-secrets: set DATABASE_URL (or SUPABASE_URL and "
                         "SUPABASE_SERVICE_KEY) to the store the Space should register in")
    if "SUPABASE_URL" in values:
        values.pop("DATABASE_URL", None)
    return values


@app.command("space")
def space(
    target: Annotated[str, typer.Argument(metavar="OWNER/NAME", help="the Space to create or"
                                                                     " update")],
    private: Annotated[bool, typer.Option(help="make a new Space private")] = False,
    hardware: Annotated[str, typer.Option(help="the Space's hardware")] = "cpu-basic",
    token: Annotated[str | None, typer.Option(
        envvar="HF_TOKEN", show_envvar=True, show_default=False,
        help="a Hugging Face write token (default: $HF_TOKEN or `hf auth login`)")] = None,
    secret: Annotated[str | None, typer.Option(
        "--secret", envvar="NADG_AUTH_TOKEN", show_envvar=True, show_default=False,
        help="the grid secret (default: $NADG_AUTH_TOKEN)")] = None,
    register: Annotated[bool, typer.Option(
        "--register/--no-register", help="add the worker to the configured registry")] = True,
    timeout: Annotated[float, typer.Option(
        help="seconds to wait for /health (a first build takes minutes)")] = 1200.0,
    url: Annotated[str | None, typer.Option(
        help="the worker's public URL when not https://OWNER-NAME.hf.space (a proxy)")] = None,
    worker_id: Annotated[str | None, typer.Option(
        "--worker-id", help="WORKER_ID (default: owner-name)")] = None,
    share_grid_secret: Annotated[bool, typer.Option(
        "--share-grid-secret", help="give the Space NADG_AUTH_TOKEN instead of its own "
                                    "NADG_WORKER_KEY")] = False,
    store_secrets: Annotated[bool, typer.Option(
        "--store-secrets", help="also give the Space this shell's DATABASE_URL (or "
                                "SUPABASE_URL + SUPABASE_SERVICE_KEY) so it self-registers"
        )] = False,
    var: Annotated[list[str] | None, typer.Option(
        "--var", metavar="KEY=VALUE", help="a public variable (repeatable), e.g. "
                                           "NADG_CAPACITY=4")] = None,
    source: Annotated[Path | None, typer.Option(
        help="the NEXUS Grid checkout to upload (default: this one)")] = None,
    poll: Annotated[float, typer.Option(hidden=True, help="seconds between polls")] = 5.0,
) -> None:
    """Create or update a worker Space, wait until it answers /health, register it."""
    from nexus_ops import deploy

    try:
        options = deploy.DeployOptions(
            target=deploy.SpaceTarget.parse(target), hf_token=_hf_token(token),
            grid_secret=secret or "", private=private, hardware=hardware, url=url,
            worker_id=worker_id, share_grid_secret=share_grid_secret,
            store_secrets=_store_secrets() if store_secrets else {}, variables=_pairs(var),
            register=register, timeout_s=timeout, poll_s=max(0.1, poll),
            source_root=source or deploy.REPO_ROOT)
        if not options.grid_secret:
            raise UsageError("no grid secret: set NADG_AUTH_TOKEN (or pass --secret) to the "
                             "grid's shared secret")
        result = deploy.deploy_space(options, progress=_progress)
    except deploy.DeployInputError as exc:
        raise UsageError(str(exc)) from None
    except (deploy.HubUnreachable, deploy.RegistrationFailed) as exc:
        raise CliError(str(exc), ExitCode.UNAVAILABLE) from None
    except deploy.DeployError as exc:
        raise CliError(str(exc), ExitCode.FAILED) from None
    typer.echo(f"{'created' if result.created else 'updated'} Space {result.repo_id}: "
               f"{len(result.uploaded)} file(s) uploaded, {len(result.deleted)} removed"
               + (f" (commit {result.commit[:12]})" if result.commit else ""))
    typer.echo(f"secrets: {', '.join(result.secrets)}; variables: "
               + ", ".join(f"{k}={v}" for k, v in sorted(result.variables.items())))
    typer.echo(f"healthy: {result.url} after {result.waited_s:.0f} s")
    if result.worker is not None:
        typer.echo(f"registered worker {result.worker.id}: {result.worker.vm_url} "
                   f"({result.worker.status.value})")


def _hf_token(token: str | None) -> str:
    if token and token.strip():
        return token.strip()
    from huggingface_hub import get_token

    return (get_token() or "").strip()


def _progress(line: str) -> None:
    typer.echo(line, err=True)


def main() -> int:
    """Entry point: ``python -m nexus_ops.deploy_cli space OWNER/NAME``."""
    return run_app(app, prog_name="nexus deploy")


if __name__ == "__main__":
    raise SystemExit(main())
