"""Wait for a deployed Space: its stage from the Hub, then ``GET /health`` and a proof of key
from the worker itself, until a deadline.

A stage that cannot get better (:data:`ERROR_STAGES`) fails at once with a hint. Stages
the Hub still shows from before this deploy (it lags a few seconds after a commit or a
restart) are not taken for its outcome (:func:`fresh`). A Space found paused or stopped,
or in an error stage when nothing was committed, is restarted once: deploying again means
"make it run".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from nexus_common.signing import GridSigner
from nexus_ops.space_hub import SpaceFailed, SpaceHub, SpaceTimeout

Progress = Callable[[str], None]
REPORT_EVERY_S = 30.0
PROBE_TIMEOUT_S = 10.0
SETTLE_S = 30.0
BUILD_STAGES = frozenset({"BUILDING", "RUNNING_BUILDING", "APP_STARTING", "RUNNING_APP_STARTING"})
#: stages after which waiting longer changes nothing
ERROR_STAGES = {
    "BUILD_ERROR": "the image did not build: read the build log at {page}?logs=build",
    "RUNTIME_ERROR": "the container exited: read the container log at {page}?logs=container"
                     " (a worker that refuses to start says why there, e.g. a weak sandbox"
                     " needs the variable NADG_SANDBOX_ALLOW_WEAK=1)",
    "CONFIG_ERROR": "the Space's README.md header is invalid: fix worker_node/README.md"
                    " (sdk: docker, app_port: 7860) and deploy again",
    "NO_APP_FILE": "the Space has no Dockerfile: deploy again",
    "PAUSED": "the Space is paused: restart it from {page}/settings",
    "STOPPED": "the Space is stopped: restart it from {page}/settings",
    "DELETING": "the Space is being deleted",
}


class _NotYet(Exception):
    """The URL does not (yet) answer as this grid's worker."""


@dataclass(frozen=True)
class WaitOptions:
    """How long and how to wait."""

    grid_secret: str
    timeout_s: float = 1200.0
    poll_s: float = 5.0
    hf_token: str | None = None  #: sent to a private Space's own ``*.hf.space`` host only


def probe(url: str, signer: GridSigner, private_token: str | None,
          timeout_s: float) -> dict[str, Any]:
    """``/health`` answered ok and the worker proved its key; :class:`_NotYet` if not."""
    from nexus_common.call import CallError, prove

    headers = {"Authorization": f"Bearer {private_token}"} if private_token else {}
    with httpx.Client(timeout=timeout_s, headers=headers) as client:
        try:
            response = client.get(url + "/health")
        except httpx.HTTPError as exc:
            raise _NotYet(f"{type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            raise _NotYet(f"/health answered HTTP {response.status_code}")
        try:
            health = response.json()
        except ValueError:
            raise _NotYet("/health answered something that is not JSON") from None
        if not isinstance(health, dict) or health.get("status") not in ("ok", "degraded"):
            raise _NotYet(f"/health answered {str(health)[:120]}")
        try:
            prove(client, url, signer)
        except CallError as exc:
            raise _NotYet(f"answers /health but {exc}") from None
    return health


def fresh(raw: Mapping[str, Any], commit: str | None, restarted: bool, moved: bool,
           since_s: float) -> bool:
    """Whether the runtime shows what this deploy did (a commit, a restart) yet.

    The Hub reports the running commit as ``sha`` when it knows it; without it (and after
    a restart), a runtime counts as fresh once it has gone through a build stage or
    ``SETTLE_S`` have passed, so a stale stage (the previous build's error, the old
    container's health) is not taken for the outcome of this deploy.
    """
    sha = raw.get("sha")
    if commit is not None and isinstance(sha, str) and sha:
        return sha == commit and (moved or not restarted or since_s >= SETTLE_S)
    if commit is not None or restarted:
        return moved or since_s >= SETTLE_S
    return True


def wait_healthy(hub: SpaceHub, options: WaitOptions, url: str, progress: Progress,
                 commit: str | None = None, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> tuple[dict[str, Any], float]:
    """Poll the Space's stage and ``url``/health until healthy; returns (health, seconds).

    ``commit``: what this deploy committed (stages from before it are not trusted). A
    Space found paused or stopped, or (when nothing was committed) in an error stage, is
    restarted once (rebuilt after a build error): deploying again means "make it run".
    """
    signer = GridSigner(options.grid_secret)
    start = since = clock()
    deadline = start + options.timeout_s
    stage, last, reported, reported_at = "", "no answer yet", "", start
    moved = restarted = False
    progress(f"waiting up to {options.timeout_s:g} s for the Space to run and answer "
             f"{url}/health")
    while True:
        runtime = hub.call("reading the Space's runtime", hub.api.get_space_runtime,
                           hub.repo_id)
        stage = str(getattr(runtime.stage, "value", runtime.stage))
        if not restarted and (stage in ("PAUSED", "STOPPED") or (
                commit is None and stage in ("BUILD_ERROR", "RUNTIME_ERROR"))):
            rebuild = stage == "BUILD_ERROR"
            progress(f"the Space is in stage {stage}: restarting it"
                     + (" with a rebuild" if rebuild else ""))
            hub.call("restarting the Space", hub.api.restart_space, hub.repo_id,
                     factory_reboot=rebuild)
            restarted, since, moved = True, clock(), False
            continue
        moved = moved or stage in BUILD_STAGES
        current = fresh(runtime.raw, commit, restarted, moved, clock() - since)
        if stage in ERROR_STAGES and current:
            detail = str(runtime.raw.get("errorMessage") or "").strip().splitlines()
            raise SpaceFailed(f"Space {hub.repo_id} is in stage {stage}"
                              + (f" ({detail[0][:200]})" if detail else "") + ": "
                              + ERROR_STAGES[stage].format(page=hub.target.page), stage)
        if stage == "RUNNING" and current:
            try:
                probe_s = max(1.0, min(PROBE_TIMEOUT_S, deadline - clock()))
                return probe(url, signer, space_token(options, url), probe_s), \
                    clock() - start
            except _NotYet as exc:
                last = str(exc)
        else:
            last = f"stage {stage}" + ("" if current else " (not yet this deploy's)")
        now = clock()
        if now >= deadline:
            raise SpaceTimeout(
                f"Space {hub.repo_id} did not become healthy at {url}/health within "
                f"{options.timeout_s:g} s (stage {stage}; last: {last}): follow the build at "
                f"{hub.target.page}?logs=build and run the same command again with a "
                "longer --timeout (it uploads nothing that is unchanged)")
        if last != reported or now - reported_at >= REPORT_EVERY_S:
            progress(f"waiting for {url}/health: {last} ({now - start:.0f} s of "
                     f"{options.timeout_s:g} s)")
            reported, reported_at = last, now
        sleep(max(0.0, min(options.poll_s, deadline - now)))


def space_token(options: WaitOptions, url: str) -> str | None:
    """The Hugging Face token for the Space's own host, never for any other URL."""
    host = (urlsplit(url).hostname or "").lower()
    return options.hf_token if host.endswith(".hf.space") else None
