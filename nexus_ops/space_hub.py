"""The Hugging Face Hub side of a Space deploy: the Space's id, the few API calls a deploy
makes (through ``huggingface_hub``), and the errors they end in.

Exceptions::

    DeployError               one line: what went wrong and what to do
    ├── DeployInputError      bad input; nothing was sent to the Hub
    ├── HubRefused            the Hub refused a request (token, permission, plan)
    ├── HubUnreachable        the Hub could not be reached
    ├── SpaceFailed           the Space's runtime ended in an error stage
    ├── SpaceTimeout          the Space did not become healthy before the deadline
    └── RegistrationFailed    the Space is healthy, but the registry could not take it

``huggingface_hub`` is imported only when a call is made (the ``nexus`` root stays quick).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from huggingface_hub import HfApi

TOKEN_PAGE = "https://huggingface.co/settings/tokens"
_NAMESPACE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,40}[A-Za-z0-9])?$")
_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")


class DeployError(Exception):
    """A deploy that could not finish; the message says what to do."""


class DeployInputError(DeployError):
    """Bad input; nothing was sent to the Hub."""


class HubRefused(DeployError):
    """The Hub refused a request."""


class HubUnreachable(DeployError):
    """The Hub could not be reached."""


class SpaceFailed(DeployError):
    """The Space's runtime is in an error stage."""

    def __init__(self, message: str, stage: str) -> None:
        super().__init__(message)
        self.stage = stage


class SpaceTimeout(DeployError):
    """The Space did not answer ``/health`` (and prove its key) before the deadline."""


class RegistrationFailed(DeployError):
    """The Space is healthy, but the registry could not be reached or refused it."""


@dataclass(frozen=True)
class SpaceTarget:
    """OWNER/NAME of a Space."""

    owner: str
    name: str

    @property
    def repo_id(self) -> str:
        """``owner/name``."""
        return f"{self.owner}/{self.name}"

    @property
    def page(self) -> str:
        """The Space's page on huggingface.co."""
        return f"https://huggingface.co/spaces/{self.repo_id}"

    @property
    def default_url(self) -> str:
        """``https://owner-name.hf.space`` (the Hub's own host wins when it reports one)."""
        sub = re.sub(r"[^a-z0-9-]", "-", f"{self.owner}-{self.name}".lower())
        return f"https://{sub}.hf.space"

    @classmethod
    def parse(cls, text: str) -> SpaceTarget:
        """A Space id, or :class:`DeployInputError` saying what is wrong with it."""
        owner, sep, name = text.strip().partition("/")
        if not sep or "/" in name:
            raise DeployInputError(f"not a Space id: {text!r}; give OWNER/NAME, e.g. "
                                   "alice/nadg-worker (OWNER is your user or organisation)")
        if not _NAMESPACE.match(owner):
            raise DeployInputError(f"bad OWNER {owner!r} in {text!r}: letters, digits and "
                                   "inner '-' only (your Hugging Face user or organisation)")
        if not _NAME.match(name) or ".." in name or "--" in name:
            raise DeployInputError(f"bad NAME {name!r} in {text!r}: 1-96 letters, digits, '-',"
                                   " '_' or '.', starting and ending with a letter or digit")
        return cls(owner, name)


def hub_error(exc: Exception, doing: str, target: SpaceTarget) -> NoReturn:
    """Turn a huggingface_hub error into a DeployError saying what to do."""
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        code = exc.response.status_code
        detail = (exc.server_message or str(exc)).strip().splitlines()[0][:200]
        if code == 401:
            raise HubRefused(f"the Hub refused the Hugging Face token while {doing} (401: "
                             f"{detail}): make a write token at {TOKEN_PAGE} and pass it with "
                             "--token or HF_TOKEN") from None
        if code == 402:
            raise HubRefused(f"the Hub wants a paid plan while {doing} (402: {detail}): Docker"
                             " Spaces need PRO/Team, or use another host (docs/deploy.md)") \
                from None
        if code == 403:
            raise HubRefused(f"the token may not write to {target.repo_id} while {doing} "
                             f"(403: {detail}): use a write token of {target.owner} or of a "
                             f"member of that organisation ({TOKEN_PAGE})") from None
        raise HubRefused(f"the Hub answered {code} while {doing}: {detail}") from None
    raise HubUnreachable(f"cannot reach the Hub while {doing} ({type(exc).__name__}: {exc}): "
                         "check the network, or HF_ENDPOINT if set") from None


def transport_error() -> type[Exception]:
    """The base of huggingface_hub's HTTP errors (its HTTP client's, re-exported)."""
    from huggingface_hub import errors

    base: type[Exception] = errors.HTTPError  # type: ignore[attr-defined]
    return base


class SpaceHub:
    """The few Hub calls a deploy makes, each with its error turned into a DeployError."""

    def __init__(self, target: SpaceTarget, token: str, endpoint: str | None = None) -> None:
        """``endpoint``: the Hub's URL (default ``$HF_ENDPOINT``, else huggingface.co)."""
        from huggingface_hub import HfApi

        self.target = target
        self.repo_id = target.repo_id
        self.api: HfApi = HfApi(endpoint=endpoint, token=token)

    def call(self, doing: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``; an HTTP failure becomes a DeployError about ``doing``."""
        try:
            return fn(*args, **kwargs)
        except transport_error() as exc:
            hub_error(exc, doing, self.target)

    def check_token(self) -> str:
        """The token's user; refuses a read-only token or a foreign OWNER."""
        me = self.call("checking the token", self.api.whoami)
        role = str(((me.get("auth") or {}).get("accessToken") or {}).get("role") or "")
        if role == "read":
            raise HubRefused(f"the Hugging Face token is read-only: make a write token at "
                             f"{TOKEN_PAGE}")
        spaces = {str(me.get("name", ""))} | {str(o.get("name", ""))
                                              for o in me.get("orgs") or []}
        if self.target.owner not in spaces:
            raise HubRefused(f"the token belongs to {me.get('name')!r}, which cannot create "
                             f"Spaces under {self.target.owner!r}: use OWNER "
                             f"{' or '.join(sorted(s for s in spaces if s))}, or that owner's "
                             "token")
        return str(me.get("name", ""))


