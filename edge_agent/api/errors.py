"""The API's errors as JSON ``{"code": stable_code, "message": human text}``: the
exception handlers, the last-resort 500 middleware, and the mapping of agent errors and
validation errors to (status, code, message) that the fast path shares.

Validation errors add ``errors`` with field paths (never the rejected input, which could
be card data).
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from edge_agent.api.middleware import ASGIApp, Message, Receive, Scope, Send, send_error
from edge_agent.api.responses import FastJSONResponse
from edge_agent.errors import (
    DiskFull,
    EdgeAgentError,
    FactRejected,
    LedgerError,
    OperationError,
)
from edge_agent.retail.requests import CARD_DATA_MESSAGE

log = structlog.get_logger("edge_agent.api")


class ApiError(BaseModel):
    code: str = Field(description="stable machine-readable code")
    message: str = Field(description="human-readable explanation")


_STATUS_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found",
                 405: "method_not_allowed", 413: "body_too_large", 415: "unsupported_media_type"}


class LastResort:
    """Anything no handler claimed: logged with its traceback, answered with a plain 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            log.exception("api.internal_error", path=scope.get("path"))
            if scope["type"] == "http" and not started:
                await send_error(send, 500, "internal_error",
                                 "the agent could not handle this request; see its log")


def agent_error_parts(exc: EdgeAgentError) -> tuple[int, str, str]:
    """(status, code, message) of an agent error, logged when it is the agent's fault."""
    if isinstance(exc, OperationError):
        return exc.status, exc.code, str(exc)
    if isinstance(exc, FactRejected):
        return 422, "fact_rejected", str(exc)
    if isinstance(exc, DiskFull):
        log.error("api.disk_full", error=str(exc))
        return 507, "disk_full", str(exc)
    if isinstance(exc, LedgerError):
        log.error("api.ledger_unavailable", error=str(exc))
        return 503, "ledger_unavailable", str(exc)
    log.error("api.agent_error", error=str(exc), kind=type(exc).__name__)
    return 500, "internal_error", str(exc)


def validation_parts(errors: list[dict[str, Any]]) -> dict[str, Any]:
    """The 422 body: first problem as the message, every field path, never the input."""
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"])
    card = any(CARD_DATA_MESSAGE in str(e["msg"]) for e in errors)
    if not card and any(e.get("type") == "json_invalid" for e in errors):
        return {"code": "invalid_json", "message": "the body is not valid JSON "
                f"({first['msg']})", "errors": errors}
    return {"code": "card_data_rejected" if card else "validation_error",
            "message": f"{where}: {first['msg']}", "errors": errors}


def error_list(raw: Any, prefix: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """pydantic's error dicts reduced to location, message and type (never the input)."""
    return [{"loc": [*prefix, *e.get("loc", ())], "msg": str(e.get("msg", "")),
             "type": str(e.get("type", ""))} for e in raw]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(EdgeAgentError)
    async def agent_error(_: Request, exc: EdgeAgentError) -> JSONResponse:
        status, code, message = agent_error_parts(exc)
        return JSONResponse({"code": code, "message": message}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return FastJSONResponse(validation_parts(error_list(exc.errors())), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, f"http_{exc.status_code}")
        message = str(exc.detail)
        where = f"{request.method} {request.url.path}"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no endpoint {where}; every endpoint is listed at /docs"
        elif exc.status_code == 405:
            allowed = (exc.headers or {}).get("allow", "")
            message = f"{request.url.path} does not take {request.method}" + \
                (f" (allowed: {allowed})" if allowed else "")
        return JSONResponse({"code": code, "message": message},
                            status_code=exc.status_code, headers=exc.headers)
