"""Exception handlers: every error answer is an :class:`ErrorResponse` body."""

from __future__ import annotations

import logging
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from nexus_common.protocol import ErrorResponse
from worker_node.runner import WorkerBusy

logger = logging.getLogger(__name__)


def _where(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc) or "body"


def describe_validation(errors: list[dict[str, Any]]) -> str:
    """A readable one-line summary: which field, what is wrong."""
    parts = [f"{_where(err.get('loc', ()))}: {err.get('msg', 'invalid')}" for err in errors[:5]]
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "invalid request: " + "; ".join(parts) + more


def error_json(status_code: int, error: str, detail: Any = None,
               headers: dict[str, str] | None = None) -> JSONResponse:
    """A JSONResponse with an ErrorResponse body."""
    body = ErrorResponse(error=error, detail=detail).model_dump(mode="json")
    return JSONResponse(body, status_code=status_code, headers=headers)


async def _validation(_request: Request, exc: Exception) -> JSONResponse:
    exc = cast(RequestValidationError, exc)  # registered for this type only
    errors = [{k: v for k, v in err.items() if k in ("loc", "msg", "type")}
              for err in exc.errors()]
    return error_json(422, describe_validation(errors), errors)


async def _http(_request: Request, exc: Exception) -> JSONResponse:
    exc = cast(HTTPException, exc)  # registered for this type only
    return error_json(exc.status_code, str(exc.detail),
                      headers=dict(exc.headers) if exc.headers else None)


def busy_response(exc: WorkerBusy) -> JSONResponse:
    """The 503 of a full worker, with ``Retry-After``."""
    return error_json(503, str(exc), {"retry_after_s": exc.retry_after_s},
                      headers={"Retry-After": str(exc.retry_after_s)})


async def _busy(_request: Request, exc: Exception) -> JSONResponse:
    return busy_response(cast(WorkerBusy, exc))  # registered for this type only


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_json(500, f"internal error: {type(exc).__name__}; see the worker's log")


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(WorkerBusy, _busy)
    app.add_exception_handler(Exception, _unexpected)
