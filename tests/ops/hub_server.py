"""A loopback stand-in of the Hugging Face Hub API: just the endpoints ``HfApi`` calls for a
Space deploy, with the same paths, bodies and error headers (huggingface_hub 2.4):

    GET    /api/whoami-v2                              the token's user, orgs and role
    POST   /api/repos/create                           409 when it exists
    GET    /api/spaces/{o}/{n}[/revision/{rev}]        space_info / repo_info
    GET    /api/spaces/{o}/{n}/tree/{rev}              list_repo_tree (recursive)
    POST   /api/validate-yaml                          the README.md header
    POST   /api/spaces/{o}/{n}/preupload/{rev}         upload modes (all regular) + oids
    POST   /api/spaces/{o}/{n}/commit/{rev}            NDJSON commit (file / deletedFile)
    POST|DELETE /api/spaces/{o}/{n}/secrets            add / delete a secret
    GET|POST|DELETE /api/spaces/{o}/{n}/variables      variables
    GET    /api/spaces/{o}/{n}/runtime                 the stage (set by the test)
    POST   /api/spaces/{o}/{n}/restart[?factory=true]  restart (rebuild)
    POST   /api/spaces/{o}/{n}/hardware                request hardware

It records everything (:class:`HubState`) so a test can assert what a deploy uploaded and
set; a test "builds" the Space by setting ``stage``. Like the real Hub, the runtime may lag
behind a commit (``lag_polls``: it shows the previous stage and ``sha`` for a few polls).
No LFS: every file is regular.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import yaml
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response


def git_oid(data: bytes) -> str:
    """Git's blob id, as the Hub reports it for regular files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class SpaceRepo:
    """One Space as the stand-in keeps it."""

    repo_id: str
    sdk: str
    private: bool
    hardware: str | None
    files: dict[str, bytes] = field(default_factory=dict)
    commits: list[dict[str, Any]] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)
    variables: dict[str, str] = field(default_factory=dict)
    stage: str = "NO_APP_FILE"
    error_message: str | None = None
    sha: str = field(default_factory=lambda: secrets.token_hex(20))
    runtime_sha: str = ""  #: the commit the runtime shows
    stale: dict[str, Any] | None = None  #: the runtime shown during the lag
    lag: int = 0  #: runtime polls that still show ``stale``
    upcoming: list[str] = field(default_factory=list)  #: stages still to show, one a poll
    restarts: list[bool] = field(default_factory=list)  #: factory reboot or not, per restart


@dataclass
class HubState:
    """Tokens it accepts and what it holds; ``after_commit`` is the stage a commit sets."""

    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    repos: dict[str, SpaceRepo] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    after_commit: str | list[str] = "BUILDING"  #: stage(s) after a commit or restart
    error_message: str | None = None
    lag_polls: int = 0  #: runtime polls after a commit that still show the previous runtime

    def start_build(self, repo: SpaceRepo) -> None:
        """What a commit or restart does to the runtime."""
        repo.stale, repo.lag = runtime_of(repo), self.lag_polls
        stages = [self.after_commit] if isinstance(self.after_commit, str) \
            else list(self.after_commit)
        repo.stage, repo.upcoming = stages[0], stages[1:]
        repo.error_message = self.error_message

    def add_user(self, token: str, name: str, orgs: tuple[str, ...] = (),
                 role: str = "write") -> None:
        """Accept ``token`` as ``name``'s."""
        self.tokens[token] = {"type": "user", "name": name,
                              "orgs": [{"name": o, "type": "org"} for o in orgs],
                              "auth": {"type": "access_token",
                                       "accessToken": {"displayName": "t", "role": role}}}


def runtime_of(repo: SpaceRepo) -> dict[str, Any]:
    """The runtime JSON of ``repo`` as it stands."""
    running = repo.stage.startswith("RUNNING")
    data: dict[str, Any] = {"stage": repo.stage, "sha": repo.runtime_sha, "hardware": {
        "current": repo.hardware if running else None, "requested": repo.hardware}}
    if repo.error_message:
        data["errorMessage"] = repo.error_message
    return data


def _error(status: int, message: str, code: str | None = None) -> JSONResponse:
    headers = {"X-Error-Message": message}
    if code:
        headers["X-Error-Code"] = code
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def create_hub_app(state: HubState) -> FastAPI:
    """The stand-in Hub over ``state``."""
    app = FastAPI()

    def user_of(request: Request) -> dict[str, Any] | None:
        auth = request.headers.get("authorization", "")
        return state.tokens.get(auth.removeprefix("Bearer ").strip()) if auth else None

    def may_write(user: dict[str, Any], owner: str) -> bool:
        return owner == user["name"] or owner in {o["name"] for o in user["orgs"]}

    @app.middleware("http")
    async def record(request: Request, call_next: Any) -> Response:
        state.requests.append((request.method, request.url.path))
        if request.url.path.startswith("/api/") and user_of(request) is None:
            return _error(401, "Invalid credentials in Authorization header")
        response: Response = await call_next(request)
        return response

    def space(request: Request, owner: str, name: str,
              write: bool = False) -> SpaceRepo | JSONResponse:
        repo = state.repos.get(f"{owner}/{name}")
        user = user_of(request)
        assert user is not None
        if repo is None or (repo.private and not may_write(user, owner)):
            return _error(404, "Repository Not Found", "RepoNotFound")
        if write and not may_write(user, owner):
            return _error(403, "You don't have the rights to write to this repo")
        return repo

    @app.get("/api/whoami-v2")
    def whoami(request: Request) -> Any:
        return user_of(request)

    @app.post("/api/repos/create")
    async def create(request: Request) -> Any:
        body = await request.json()
        user = user_of(request)
        assert user is not None
        owner = body.get("organization") or user["name"]
        if body.get("type") != "space" or body.get("sdk") not in ("docker", "gradio",
                                                                  "static", "streamlit"):
            return _error(400, "a space needs type=space and an sdk")
        if not may_write(user, owner) or user["auth"]["accessToken"]["role"] == "read":
            return _error(403, f"You don't have the rights to create a space under {owner}")
        repo_id = f"{owner}/{body['name']}"
        if repo_id in state.repos:
            return _error(409, "You already created this space repo")
        state.repos[repo_id] = SpaceRepo(
            repo_id, body["sdk"], body.get("visibility") == "private" or bool(
                body.get("private")), body.get("hardware"))
        return {"url": f"{request.base_url}spaces/{repo_id}", "name": repo_id}

    def info(repo: SpaceRepo) -> dict[str, Any]:
        sub = repo.repo_id.replace("/", "-").replace("_", "-").replace(".", "-").lower()
        return {"id": repo.repo_id, "sha": repo.sha, "private": repo.private,
                "sdk": repo.sdk, "subdomain": sub, "host": f"https://{sub}.hf.space",
                "siblings": [{"rfilename": p} for p in sorted(repo.files)],
                "runtime": runtime_of(repo)}

    @app.get("/api/spaces/{owner}/{name}")
    def space_info(request: Request, owner: str, name: str) -> Any:
        repo = space(request, owner, name)
        return repo if isinstance(repo, JSONResponse) else info(repo)

    @app.get("/api/spaces/{owner}/{name}/revision/{rev}")
    def space_info_rev(request: Request, owner: str, name: str, rev: str) -> Any:
        return space_info(request, owner, name)

    @app.get("/api/spaces/{owner}/{name}/tree/{rev}")
    def tree(request: Request, owner: str, name: str, rev: str) -> Any:
        repo = space(request, owner, name)
        if isinstance(repo, JSONResponse):
            return repo
        return [{"type": "file", "path": p, "size": len(d), "oid": git_oid(d)}
                for p, d in sorted(repo.files.items())]

    @app.post("/api/validate-yaml")
    async def validate_yaml(request: Request) -> Any:
        body = await request.json()
        content = str(body.get("content", ""))
        if not content.startswith("---\n"):
            return JSONResponse({"errors": [{"message": "no YAML header"}]}, status_code=400)
        header = yaml.safe_load(content.split("---\n", 2)[1])
        if not isinstance(header, dict) or "sdk" not in header:
            return JSONResponse({"errors": [{"message": "sdk is required"}]},
                                status_code=400)
        return {"errors": [], "warnings": []}

    @app.post("/api/spaces/{owner}/{name}/preupload/{rev}")
    async def preupload(request: Request, owner: str, name: str, rev: str) -> Any:
        repo = space(request, owner, name, write=True)
        if isinstance(repo, JSONResponse):
            return repo
        body = await request.json()
        return {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                           "oid": git_oid(repo.files[f["path"]])
                           if f["path"] in repo.files else None} for f in body["files"]]}

    @app.post("/api/spaces/{owner}/{name}/commit/{rev}")
    async def commit(request: Request, owner: str, name: str, rev: str) -> Any:
        repo = space(request, owner, name, write=True)
        if isinstance(repo, JSONResponse):
            return repo
        lines = [json.loads(x) for x in (await request.body()).splitlines() if x.strip()]
        added, deleted = [], []
        for item in lines[1:]:
            value = item["value"]
            if item["key"] == "file":
                repo.files[value["path"]] = base64.b64decode(value["content"])
                added.append(value["path"])
            elif item["key"] == "deletedFile":
                repo.files.pop(value["path"], None)
                deleted.append(value["path"])
            else:
                return _error(400, f"the stand-in does not take {item['key']}")
        state.start_build(repo)
        repo.sha = repo.runtime_sha = secrets.token_hex(20)
        repo.commits.append({"summary": lines[0]["value"]["summary"], "oid": repo.sha,
                             "added": added, "deleted": deleted})
        return {"commitUrl": f"{request.base_url}spaces/{repo.repo_id}/commit/{repo.sha}",
                "commitOid": repo.sha, "pullRequestUrl": None}

    @app.api_route("/api/spaces/{owner}/{name}/secrets", methods=["POST", "DELETE"])
    async def secrets_(request: Request, owner: str, name: str) -> Any:
        repo = space(request, owner, name, write=True)
        if isinstance(repo, JSONResponse):
            return repo
        body = await request.json()
        if request.method == "DELETE":
            if body["key"] not in repo.secrets:
                return _error(404, "Secret not found")
            del repo.secrets[body["key"]]
        else:
            repo.secrets[body["key"]] = body["value"]
        return Response(status_code=200)

    @app.api_route("/api/spaces/{owner}/{name}/variables", methods=["GET", "POST", "DELETE"])
    async def variables(request: Request, owner: str, name: str) -> Any:
        repo = space(request, owner, name, write=request.method != "GET")
        if isinstance(repo, JSONResponse):
            return repo
        if request.method == "POST":
            body = await request.json()
            repo.variables[body["key"]] = body["value"]
        elif request.method == "DELETE":
            repo.variables.pop((await request.json())["key"], None)
        return {k: {"value": v} for k, v in repo.variables.items()}

    @app.get("/api/spaces/{owner}/{name}/runtime")
    def runtime(request: Request, owner: str, name: str) -> Any:
        repo = space(request, owner, name)
        if isinstance(repo, JSONResponse):
            return repo
        if repo.lag > 0 and repo.stale is not None:
            repo.lag -= 1
            return repo.stale
        data = runtime_of(repo)
        if repo.upcoming:
            repo.stage = repo.upcoming.pop(0)
        return data

    @app.post("/api/spaces/{owner}/{name}/restart")
    def restart(request: Request, owner: str, name: str, factory: str = "") -> Any:
        repo = space(request, owner, name, write=True)
        if isinstance(repo, JSONResponse):
            return repo
        repo.restarts.append(factory == "true")
        state.start_build(repo)
        return runtime_of(repo)

    @app.post("/api/spaces/{owner}/{name}/hardware")
    async def hardware(request: Request, owner: str, name: str) -> Any:
        repo = space(request, owner, name, write=True)
        if isinstance(repo, JSONResponse):
            return repo
        repo.hardware = (await request.json())["flavor"]
        return runtime_of(repo)

    return app
