"""The worker protocol's hot path: ``POST /execute`` and ``POST /execute/batch`` answered
without FastAPI's routing, dependency solving and response re-validation.

Why: py-spy on a worker answering no-op subtasks one at a time put about half of its CPU in
FastAPI's layers below the auth middleware (route matching, solving dependencies, the body
turned into a model, the returned model validated again for ``response_model``), against
an eighth in the subtask itself. This ASGI middleware sits inside
:class:`worker_node.auth.RequestAuth` and :class:`worker_node.limits.BodySizeLimit`, so
every request it serves has been authenticated and size-checked; it validates the body
once, runs it on the same :class:`~worker_node.runner.SubtaskRunner`, and answers what the
routes of :mod:`worker_node.routes.execute` answer.

Anything else goes on to those routes with its body replayed, so every error answer stays
the one FastAPI gives: a body that does not validate (422), a batch over ``MAX_BATCH`` or
with repeated ids, the original NADG API (``NADG_COMPAT_V1=1`` answers ``/execute`` with
either body). The routes stay the documented interface; a contract test sends the same
requests through both and compares the answers.
"""

from __future__ import annotations

from pydantic import TypeAdapter, ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from nexus_common.protocol import Subtask, SubtaskResult
from worker_node.auth import SCOPE_KEY
from worker_node.errors import busy_response
from worker_node.limits import read_messages, replay
from worker_node.routes.execute import batch_problem
from worker_node.runner import WorkerBusy

_ONE = TypeAdapter(Subtask)
_MANY = TypeAdapter(list[Subtask])
_RESULTS = TypeAdapter(list[SubtaskResult])
#: path -> whether its body is a batch
PATHS = {"/execute": False, "/execute/batch": True}
_JSON = [(b"content-type", b"application/json")]


class ExecuteFastPath:
    """Pure ASGI middleware: answer valid execute requests directly."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        batch = PATHS.get(scope["path"]) if scope["type"] == "http" and \
            scope["method"] == "POST" else None
        worker = getattr(scope["app"].state, "worker", None) if batch is not None else None
        if (batch is None or worker is None or worker.settings.compat_v1
                or scope.get("state", {}).get(SCOPE_KEY) is None):
            await self.app(scope, receive, send)
            return
        if not _json_body(scope):  # the route answers what FastAPI makes of it
            await self.app(scope, receive, send)
            return
        messages = await read_messages(receive) or []
        if messages and messages[-1]["type"] == "http.disconnect":
            return  # the client left before its whole body came: nothing to run
        parsed = _parse(b"".join(m.get("body", b"") for m in messages), batch)
        if parsed is None:  # let the route give FastAPI's own answer
            await self.app(scope, replay(messages, receive), send)
            return
        runner = worker.runner
        try:
            if isinstance(parsed, list):
                answer = _RESULTS.dump_json(await runner.execute_batch(parsed))
            else:
                answer = (await runner.execute(parsed)).model_dump_json().encode()
        except WorkerBusy as exc:
            await busy_response(exc)(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*_JSON, (b"content-length", str(len(answer)).encode())]})
        await send({"type": "http.response.body", "body": answer})


def _json_body(scope: Scope) -> bool:
    """True when FastAPI would read the body as JSON: no content type, or a JSON one."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            media: bytes = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or (
                media.startswith(b"application/") and media.endswith(b"+json"))
    return True


def _parse(body: bytes, batch: bool) -> Subtask | list[Subtask] | None:
    """The request's subtask(s), or None when the route should answer instead."""
    try:
        if not batch:
            return _ONE.validate_json(body)
        subtasks = _MANY.validate_json(body)
    except ValidationError:
        return None
    return subtasks if batch_problem(subtasks) is None else None

