"""Call one worker directly, signed: the operator's and scripts' client.

    >>> call_worker("https://w1.example", "noop", {"echo": 1}, secret)   # doctest: +SKIP
    SubtaskResult(id=..., status=<ResultStatus.COMPLETED: 'completed'>, ...)

The worker first proves it holds its key (``POST /auth/prove``), then gets the subtask
(``POST /execute``), both signed for that worker by :class:`SigningAuth`; nobody builds
headers by hand. ``nexus call URL KIND 'PAYLOAD-JSON'`` is this function on the command line.

Exceptions::

    CallError            the call produced no result (the message says why and what to do)
    └── ProofFailed      the URL could not prove it holds the worker's key: nothing was sent
"""

from __future__ import annotations

import hmac
import uuid
from typing import Any

import httpx
from pydantic import ValidationError

from nexus_common.protocol import Subtask, SubtaskResult, endpoint_url
from nexus_common.signing import GridSigner, SigningAuth, new_challenge


class CallError(Exception):
    """A direct call to a worker produced no result."""


class ProofFailed(CallError):
    """The URL did not prove it holds its key; no subtask was sent to it."""


def build_subtask(kind: str, payload: dict[str, Any], timeout_s: float = 60.0) -> Subtask:
    """A ``Subtask`` for a direct call (ValueError saying what is wrong in the payload)."""
    try:
        return Subtask.model_validate({"id": f"call-{uuid.uuid4().hex[:12]}", "task_id": "call",
                                       "kind": kind, "payload": payload,
                                       "timeout_s": timeout_s})
    except ValidationError as exc:
        raise ValueError(f"not a valid {kind!r} subtask: {exc}") from None


def call_worker(url: str, kind: str, payload: dict[str, Any], secret: str, *,
                timeout_s: float = 60.0, http: httpx.Client | None = None) -> SubtaskResult:
    """Run one subtask on the worker at ``url``, signed with the grid ``secret``.

    Raises :class:`ProofFailed` when the URL is not a worker holding its key (nothing is
    sent), :class:`CallError` when the worker refuses or cannot be reached, ValueError for
    a bad subtask, :class:`nexus_common.signing.WeakSecret` for a short secret.
    """
    subtask = build_subtask(kind, payload, timeout_s)
    signer = GridSigner(secret)
    own = http is None
    client = http or httpx.Client(timeout=timeout_s + 10.0)
    base = url.rstrip("/")
    try:
        prove(client, base, signer)
        response = _post(client, endpoint_url(base, "/execute"),
                         subtask.model_dump(mode="json"), signer, timeout_s + 10.0)
        try:
            return SubtaskResult.model_validate_json(response.content)
        except ValidationError as exc:
            raise CallError(f"{url} answered something that is not a result: {exc}") from None
    finally:
        if own:
            client.close()


def prove(client: httpx.Client, url: str, signer: GridSigner) -> None:
    """Ask the worker at ``url`` to prove it holds its key; :class:`ProofFailed` if not."""
    challenge = new_challenge()
    try:
        response = _post(client, url + "/auth/prove", {"challenge": challenge}, signer, 10.0)
        proof = str(response.json()["proof"])
    except (CallError, ValueError, KeyError, TypeError) as exc:
        raise ProofFailed(f"{url} did not prove it holds its key ({exc}); nothing was sent: "
                          "is it a grid worker with the same NADG_AUTH_TOKEN?") from None
    if not hmac.compare_digest(proof.encode(), signer.expected_proof(url, challenge).encode()):
        raise ProofFailed(f"{url} answered a wrong proof of key: not a worker of this grid; "
                          "nothing was sent")


def _post(client: httpx.Client, url: str, body: object, signer: GridSigner,
          timeout_s: float) -> httpx.Response:
    try:
        response = client.post(url, json=body, auth=SigningAuth(signer), timeout=timeout_s)
    except httpx.TransportError as exc:
        raise CallError(f"{url}: cannot reach the worker ({type(exc).__name__}: {exc})") \
            from None
    if response.status_code >= 400:
        try:
            detail = str(response.json().get("error", response.text))
        except ValueError:
            detail = response.text
        raise CallError(f"{url}: HTTP {response.status_code}: {detail[:300]}")
    return response
