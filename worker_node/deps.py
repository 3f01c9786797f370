"""FastAPI dependencies: the worker's state and its auth, as ``Annotated`` aliases.

Authentication itself happens in :class:`worker_node.auth.RequestAuth` (before any body
is read); :data:`AuthDep` makes a route refuse any request that middleware did not pass,
so a route can never be served unauthenticated by accident.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from worker_node.auth import SCOPE_KEY, AuthContext
from worker_node.state import WorkerState


async def get_state(request: Request) -> WorkerState:
    """The state the lifespan built; 503 while the worker is still starting."""
    state: WorkerState | None = getattr(request.app.state, "worker", None)
    if state is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            "the worker is still starting; retry in a moment")
    return state


StateDep = Annotated[WorkerState, Depends(get_state)]


async def get_auth(request: Request, state: StateDep) -> AuthContext:
    """How the request was authenticated; 401 when the auth middleware did not pass it."""
    context: AuthContext | None = request.scope.get("state", {}).get(SCOPE_KEY)
    if context is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                            "unauthenticated: requests to a worker are signed "
                            "(`nexus call`, nexus_common.signing.SigningAuth)")
    return context


async def require_token(request: Request, state: StateDep) -> None:
    """Refuse a request that the auth middleware did not authenticate."""
    await get_auth(request, state)


AuthContextDep = Annotated[AuthContext, Depends(get_auth)]
AuthDep = Depends(require_token)
