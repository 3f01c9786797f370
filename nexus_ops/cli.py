"""``nexus``: the console script over every NEXUS Grid command.

    nexus run "COMMAND" [--data FILE] …      one job headless (python -m master_app run)
    nexus resume                              resume unfinished tasks
    nexus train …                             federated training
    nexus workers list|add|remove|status|ping the registry (python -m database.manage_workers)
    nexus heartbeat                           ping every worker once (python -m scripts.heartbeat)
    nexus worker [--host H] [--port P]        serve one worker (the container's command)
    nexus pull                                an outbound-only worker (python -m worker_node pull)
    nexus bench [--json]                      the benchmark suite (python -m scripts.bench)
    nexus up [--workers N] [--ui]             a local grid (python -m scripts.grid, make up)
    nexus chaos --workers N --kills K …       a job under random kills (python -m scripts.chaos)
    nexus call URL KIND 'PAYLOAD-JSON'        call one worker, signed for you
    nexus worker-key URL                      the per-worker key for NADG_WORKER_KEY

Each group is the same typer app the module's own ``python -m`` entry runs, so the two
spellings cannot drift. Exit codes: :class:`nexus_common.cli.ExitCode`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Annotated

import typer

from nexus_common.cli import UsageError, new_app, run_app
from nexus_ops import call_cli, deploy_cli, heartbeat, workers_cli

app = new_app("NEXUS Grid: turn a few cheap machines into one grid for AI work.")
app.add_typer(workers_cli.app, name="workers", help="Manage the worker registry.")
app.add_typer(deploy_cli.app, name="deploy", help="Deploy a worker: nexus deploy space O/N.")
app.command("heartbeat", help="Ping every registered worker once and update the registry.")(
    heartbeat.heartbeat)
app.command("call", help="Call one worker directly, signing the request for you.")(
    call_cli.call)
app.command("worker-key", help="Print the key a worker holds instead of the grid secret.")(
    call_cli.worker_key)


@app.command()
def worker(host: Annotated[str, typer.Option(help="address to bind")] = "0.0.0.0",
           port: Annotated[int | None, typer.Option(
               help="port to serve on (default: $PORT or 7860)")] = None) -> None:
    """Serve one worker node (what the container runs)."""
    import uvicorn

    uvicorn.run("worker_node.main:app", host=host,
                port=port if port is not None else int(os.environ.get("PORT", "7860")))


@app.command(help="Lease work from the store: an outbound-only (pull) worker.")
def pull(lease_s: Annotated[float, typer.Option(help="lease length in seconds")] = 30.0,
         timeout_s: Annotated[float, typer.Option(help="deadline of one subtask (s)")] = 300.0,
         idle_poll_s: Annotated[float, typer.Option(help="idle poll period (s)")] = 5.0,
         long_poll_s: Annotated[float, typer.Option(help="Supabase long poll (s)")] = 10.0,
         ) -> None:
    """The same as ``python -m worker_node pull``."""
    from worker_node.__main__ import pull as pull_worker

    for name, value in (("--lease-s", lease_s), ("--timeout-s", timeout_s),
                        ("--idle-poll-s", idle_poll_s), ("--long-poll-s", long_poll_s)):
        if value <= 0:
            raise UsageError(f"{name} must be positive")
    pull_worker(lease_s=lease_s, timeout_s=timeout_s, idle_poll_s=idle_poll_s,
                long_poll_s=long_poll_s)


@app.command()
def bench(only: Annotated[list[str] | None, typer.Option(
              "--only", help="a module to run (repeatable)")] = None,
          as_json: Annotated[bool, typer.Option("--json", help="print JSON rows")] = False,
          ) -> None:
    """Run the benchmark suite and print its table."""
    from scripts import bench as suite

    suite.bench(only=only, as_json=as_json)


def _mount_scripts() -> None:
    """The local grid (``make up``) and the chaos command, as ``nexus up`` / ``nexus chaos``."""
    from scripts import chaos, grid, smoke

    app.command("up", help="Start a local grid: N workers, an SQLite registry, the UI.")(
        grid.grid)
    app.command("chaos", help="Run a real job on a local grid while killing workers.")(
        chaos.chaos)
    app.command("smoke", help="Check a deployed worker end to end.")(smoke.smoke)


def _mount_master() -> None:
    """The master's commands (run, resume, train, …) at the top level."""
    from master_app import cli as master_cli

    master_app_typer = getattr(master_cli, "app", None)
    if isinstance(master_app_typer, typer.Typer):
        for info in master_app_typer.registered_commands:
            app.registered_commands.append(info)
        for group in master_app_typer.registered_groups:
            app.registered_groups.append(group)


_mount_master()
_mount_scripts()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nexus`` console script; returns the exit code."""
    return run_app(app, argv, prog_name="nexus")


if __name__ == "__main__":
    raise SystemExit(main())
