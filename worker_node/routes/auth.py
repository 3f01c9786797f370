"""``POST /auth/prove``: the worker proves it holds its key before it gets work."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from nexus_common.signing import proof_of_key
from worker_node.deps import AuthContextDep, StateDep

router = APIRouter()


class ProveRequest(BaseModel):
    """A challenge from the master."""

    challenge: str = Field(min_length=16, max_length=256, pattern=r"^[A-Za-z0-9_-]+$")


class ProveResponse(BaseModel):
    """``HMAC(key, "NADG-PROVE-v1" | target | challenge)`` and who answered."""

    proof: str
    target: str
    worker_id: str


@router.post("/auth/prove", response_model=ProveResponse)
async def prove(body: ProveRequest, auth: AuthContextDep, state: StateDep) -> ProveResponse:
    """Answer a signed challenge with a proof only this worker's key can make."""
    if auth.verified is None:
        raise HTTPException(409, "only a signed request can be answered with a proof "
                                 f"(this one was authenticated as {auth.method})")
    proof = proof_of_key(auth.verified.key, auth.verified.target, body.challenge)
    return ProveResponse(proof=proof, target=auth.verified.target,
                         worker_id=state.settings.worker_id)
