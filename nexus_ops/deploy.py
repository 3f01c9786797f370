"""``nexus deploy space OWNER/NAME``: create or update a worker on a Hugging Face Docker Space.

One call of :func:`deploy_space` does, in order, and stops at the first failure:

1. check everything local: OWNER/NAME, the grid secret, the files (:mod:`space_bundle`),
   that no file holds a secret; nothing has touched the Hub yet;
2. check the token (``whoami``): valid, allowed to write, and OWNER is its user or one of
   its organisations;
3. create the Space repository (Docker SDK, hardware), or find the existing one;
4. set its secrets and variables through the Hub API (before the files, so the first build
   starts with them): ``NADG_WORKER_KEY`` (the worker's own key for its URL, so the Space
   never holds the grid secret; ``share_grid_secret`` sends ``NADG_AUTH_TOKEN`` instead),
   store credentials when asked, ``NADG_PUBLIC_URL`` and ``WORKER_ID``;
5. commit the files that changed (and delete worker files that no longer exist); an
   unchanged re-run commits nothing;
6. wait, until a deadline, for the Space to run and answer ``GET /health``, and for the
   worker to prove it holds its key (``POST /auth/prove``); a Space whose stage becomes an
   error fails at once with the stage and a hint;
7. register the worker in the configured registry (``register_worker``: insert or update
   by URL).

The Hub calls and the exceptions tree live in :mod:`nexus_ops.space_hub`, the wait in
:mod:`nexus_ops.space_wait`, the files in :mod:`nexus_ops.space_bundle`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from nexus_common.signing import WeakSecret, check_secret, issue_worker_key
from nexus_ops.space_bundle import PACKAGES as MANAGED_PACKAGES
from nexus_ops.space_bundle import (
    BundleError,
    BundleFile,
    bundle_files,
    check_no_secrets,
    git_blob_oid,
)
from nexus_ops.space_hub import (
    TOKEN_PAGE,
    DeployError,
    DeployInputError,
    HubRefused,
    HubUnreachable,
    RegistrationFailed,
    SpaceFailed,
    SpaceHub,
    SpaceTarget,
    SpaceTimeout,
    hub_error,
    transport_error,
)
from nexus_ops.space_wait import Progress, WaitOptions, wait_healthy

if TYPE_CHECKING:
    from database.models import WorkerNode

__all__ = ["DeployError", "DeployInputError", "DeployOptions", "DeployResult", "HubRefused",
           "HubUnreachable", "RegistrationFailed", "SpaceFailed", "SpaceTarget",
           "SpaceTimeout", "deploy_space"]

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
_STORE_SECRETS = ("DATABASE_URL", "SUPABASE_URL", "SUPABASE_SERVICE_KEY")


@dataclass
class DeployOptions:
    """What to deploy where. ``grid_secret`` is the grid's ``NADG_AUTH_TOKEN``."""

    target: SpaceTarget
    hf_token: str
    grid_secret: str
    private: bool = False
    hardware: str = "cpu-basic"
    url: str | None = None
    worker_id: str | None = None
    share_grid_secret: bool = False
    store_secrets: Mapping[str, str] = field(default_factory=dict)
    variables: Mapping[str, str] = field(default_factory=dict)
    register: bool = True
    timeout_s: float = 1200.0
    poll_s: float = 5.0
    source_root: Path = REPO_ROOT
    endpoint: str | None = None  #: the Hub's URL (default: ``$HF_ENDPOINT`` or huggingface.co)

    @property
    def resolved_worker_id(self) -> str:
        """``WORKER_ID`` of the Space's worker (default ``owner-name``)."""
        return self.worker_id or f"{self.target.owner}-{self.target.name}".lower()


@dataclass
class DeployResult:
    """What a deploy did."""

    repo_id: str
    url: str
    created: bool
    uploaded: list[str]
    deleted: list[str]
    commit: str | None
    secrets: list[str]
    variables: dict[str, str]
    health: dict[str, Any]
    waited_s: float
    worker: WorkerNode | None = None


def check_url(url: str) -> str:
    """An http(s) base URL (no path or query), without a trailing slash."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query \
            or parts.path not in ("", "/"):
        raise DeployInputError(f"--url must be a base URL such as https://worker.example.org,"
                               f" got {url!r}")
    return url.strip().rstrip("/")


def check_store_secrets(values: Mapping[str, str]) -> dict[str, str]:
    """The store credentials a Space may get; refuses loopback addresses it cannot reach."""
    unknown = sorted(set(values) - set(_STORE_SECRETS))
    if unknown:
        raise DeployInputError(f"not a store variable: {', '.join(unknown)}")
    for name, value in values.items():
        if name in ("DATABASE_URL", "SUPABASE_URL"):
            host = (urlsplit(value).hostname or "").lower()
            if host in ("", "localhost") or host.startswith("127.") or host == "::1":
                raise DeployInputError(
                    f"{name} points at {host or 'no host'}, which a Space cannot reach: use the "
                    "store's public address (e.g. the Supabase pooler URL), or deploy without "
                    "--store-secrets")
    if ("SUPABASE_URL" in values) != ("SUPABASE_SERVICE_KEY" in values):
        raise DeployInputError("SUPABASE_URL and SUPABASE_SERVICE_KEY go together: set both")
    return dict(values)


def _create_or_find(hub: SpaceHub, options: DeployOptions, progress: Progress) -> tuple[bool, str]:
    """Create the Space (or find it); returns (created, public URL)."""
    from huggingface_hub import SpaceHardware
    from huggingface_hub.errors import HfHubHTTPError

    api, repo_id = hub.api, hub.repo_id
    created = True
    try:
        api.create_repo(repo_id, repo_type="space", space_sdk="docker",
                        private=options.private,
                        space_hardware=SpaceHardware(options.hardware))
    except HfHubHTTPError as exc:
        if exc.response is None or exc.response.status_code != 409:
            hub_error(exc, f"creating the Space {repo_id}", hub.target)
        created = False
    except transport_error() as exc:
        hub_error(exc, f"creating the Space {repo_id}", hub.target)
    info = hub.call(f"reading the Space {repo_id}", api.space_info, repo_id)
    progress(f"{'created' if created else 'found'} Space {repo_id} (sdk {info.sdk or 'docker'})")
    if not created:
        if info.sdk not in (None, "docker"):
            progress(f"the Space's SDK is {info.sdk}: the new README.md makes it docker")
        runtime = hub.call("reading the Space's runtime", api.get_space_runtime, repo_id)
        current = runtime.requested_hardware or runtime.hardware
        if current and str(current) != options.hardware:
            progress(f"hardware {current} -> {options.hardware}")
            hub.call("requesting hardware", api.request_space_hardware, repo_id,
                     SpaceHardware(options.hardware))
    host = (info.host or "").strip()
    url = options.url or (host if host.startswith("https://") else options.target.default_url)
    return created, check_url(url)


def _set_settings(hub: SpaceHub, options: DeployOptions, url: str,
                  progress: Progress) -> tuple[list[str], dict[str, str]]:
    """Set the Space's secrets and variables; returns (secret names, variables)."""
    api, repo_id = hub.api, hub.repo_id
    if options.share_grid_secret:
        secrets = {"NADG_AUTH_TOKEN": options.grid_secret}
    else:
        secrets = {"NADG_WORKER_KEY": issue_worker_key(options.grid_secret, url)}
    secrets.update(options.store_secrets)
    variables = {**options.variables, "NADG_PUBLIC_URL": url,
                 "WORKER_ID": options.resolved_worker_id}
    for key, value in secrets.items():
        hub.call(f"setting the secret {key}", api.add_space_secret, repo_id, key, value)
    # what an earlier deploy set and this one does not (the other key, store credentials
    # no longer asked for) must not stay on the Space
    from huggingface_hub.errors import HfHubHTTPError

    for stale in sorted({"NADG_AUTH_TOKEN", "NADG_WORKER_KEY", *_STORE_SECRETS} - set(secrets)):
        try:
            api.delete_space_secret(repo_id, stale)
        except transport_error() as exc:
            absent = isinstance(exc, HfHubHTTPError) and exc.response is not None \
                and exc.response.status_code == 404
            if not absent:
                hub_error(exc, f"removing the secret {stale}", hub.target)
    for key, value in variables.items():
        hub.call(f"setting the variable {key}", api.add_space_variable, repo_id, key, value)
    progress(f"secrets: {', '.join(sorted(secrets))}; variables: "
             f"{', '.join(f'{k}={v}' for k, v in sorted(variables.items()))}")
    return sorted(secrets), variables


def _upload(hub: SpaceHub, files: list[BundleFile], created: bool,
            progress: Progress) -> tuple[list[str], list[str], str | None]:
    """Commit what changed; returns (uploaded, deleted, commit id or None)."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, RepoFile

    api, repo_id = hub.api, hub.repo_id
    remote: dict[str, str | None] = {}
    if not created:
        tree = hub.call("listing the Space's files", api.list_repo_tree, repo_id,
                        repo_type="space", recursive=True)
        remote = {f.path: f.blob_id for f in tree if isinstance(f, RepoFile)}
    local = {f.path_in_repo: f for f in files}
    changed = [f for f in files if remote.get(f.path_in_repo) != git_blob_oid(f.read())]
    stale = sorted(p for p in remote if p not in local
                   and p.split("/", 1)[0] in MANAGED_PACKAGES and "/" in p)
    if not changed and not stale:
        progress(f"files: all {len(files)} unchanged, nothing to commit")
        return [], [], None
    operations: list[Any] = [CommitOperationAdd(path_in_repo=f.path_in_repo,
                                                path_or_fileobj=f.read()) for f in changed]
    operations += [CommitOperationDelete(path_in_repo=p) for p in stale]
    progress(f"files: uploading {len(changed)} of {len(files)}, deleting {len(stale)}")
    info = hub.call("uploading the worker", api.create_commit, repo_id, operations,
                    repo_type="space", commit_message="Deploy a NEXUS Grid worker")
    return [f.path_in_repo for f in changed], stale, str(info.oid)


def register(url: str, options: DeployOptions, health: Mapping[str, Any]) -> WorkerNode:
    """Insert or update the worker in the configured registry (marks it active)."""
    from database.config import open_store
    from database.store import StoreError

    kinds = health.get("kinds")
    capacity = health.get("capacity")
    try:
        store = open_store()
        try:
            return store.register_worker(
                url, name=options.resolved_worker_id,
                capabilities=[str(k) for k in kinds] if isinstance(kinds, list) else (),
                max_concurrency=capacity if isinstance(capacity, int) and capacity > 0 else 4,
                version=str(health.get("version") or "") or None)
        finally:
            store.close()
    except StoreError as exc:
        raise RegistrationFailed(f"the Space is healthy at {url}, but the registry did not "
                                 f"take it ({exc}): add it later with `nexus workers add "
                                 f"{url}`") from None


def _check_input(options: DeployOptions) -> list[BundleFile]:
    from huggingface_hub import SpaceHardware

    hardware = [h.value for h in SpaceHardware]
    if options.hardware not in hardware:
        raise DeployInputError(f"unknown hardware {options.hardware!r}; use one of: "
                               f"{', '.join(hardware)}")
    if options.timeout_s <= 0:
        raise DeployInputError(f"--timeout must be positive, got {options.timeout_s:g}")
    if not options.hf_token.strip():
        raise DeployInputError(f"no Hugging Face token: pass --token, set HF_TOKEN or run "
                               f"`hf auth login` (a write token from {TOKEN_PAGE})")
    try:
        check_secret(options.grid_secret)
    except WeakSecret as exc:
        raise DeployInputError(str(exc)) from None
    if options.url:
        check_url(options.url)
    reserved = {"NADG_PUBLIC_URL", "WORKER_ID", "NADG_AUTH_TOKEN", "NADG_WORKER_KEY",
                *_STORE_SECRETS}
    if bad := sorted(set(options.variables) & reserved):
        raise DeployInputError(f"--var cannot set {', '.join(bad)}: the deploy sets it "
                               "(secrets never go into public variables)")
    check_store_secrets(options.store_secrets)
    try:
        files = bundle_files(options.source_root)
        check_no_secrets(files, [options.grid_secret, options.hf_token,
                                 *options.store_secrets.values()])
    except BundleError as exc:
        raise DeployInputError(str(exc)) from None
    return files


def deploy_space(options: DeployOptions, progress: Progress = logger.info) -> DeployResult:
    """Create or update the worker Space, wait until it is healthy, register it."""
    files = _check_input(options)
    hub = SpaceHub(options.target, options.hf_token, options.endpoint)
    user = hub.check_token()
    progress(f"token of {user}: may write to {options.target.owner}")
    created, url = _create_or_find(hub, options, progress)
    if options.private:
        progress("a private Space answers only requests carrying a Hugging Face token; the "
                 "master sends none, so it cannot dispatch to this worker without a proxy")
    secret_names, variables = _set_settings(hub, options, url, progress)
    uploaded, deleted, commit = _upload(hub, files, created, progress)
    waiting = WaitOptions(options.grid_secret, options.timeout_s, options.poll_s,
                          options.hf_token if options.private else None)
    health, waited = wait_healthy(hub, waiting, url, progress, commit)
    progress(f"healthy at {url} after {waited:.0f} s (worker {health.get('worker_id')}, "
             f"version {health.get('version')})")
    worker = register(url, options, health) if options.register else None
    return DeployResult(hub.repo_id, url, created, uploaded, deleted, commit, secret_names,
                        variables, health, waited, worker)
