"""``POST /v1/sales`` as pure ASGI middleware: the hot path without FastAPI's per-request
machinery. Measured by ``bench/api.py``."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import orjson
from pydantic import ValidationError

from edge_agent.api.errors import agent_error_parts, error_list, validation_parts
from edge_agent.api.middleware import ASGIApp, Receive, Scope, Send, send_body
from edge_agent.errors import EdgeAgentError
from edge_agent.retail import RetailService
from edge_agent.retail.requests import SaleRequest

_KEY_RE = re.compile(r"[\x21-\x7e]{1,128}")


@dataclasses.dataclass(frozen=True, slots=True)
class _RouteName:
    path: str


class SalesFastPath:
    """``POST /v1/sales``, the hot path, without FastAPI's per-request machinery
    (dependency solving, ``json.loads`` then validation): pydantic-core parses and
    validates the body in one pass. Same contract as the documented route, which stays in
    the OpenAPI document (and answers if this middleware is ever removed)."""

    route = _RouteName("/v1/sales")

    def __init__(self, app: ASGIApp, retail: RetailService) -> None:
        self.app = app
        self.retail = retail

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/sales" \
                or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route
        key: str | None = None
        for name, value in scope["headers"]:
            if name == b"idempotency-key":
                key = value.decode("latin-1")
        chunks = []
        while True:  # one message when BodyLimit (outside) has buffered the body
            message = await receive()
            if message["type"] != "http.request":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        errors: list[dict[str, Any]] = []
        request: SaleRequest | None = None
        try:
            request = SaleRequest.model_validate_json(b"".join(chunks))
        except ValidationError as exc:
            errors = error_list(exc.errors(include_input=False), ("body",))
        if key is None:
            errors.insert(0, {"loc": ["header", "Idempotency-Key"], "msg": "Field required",
                              "type": "missing"})
        elif _KEY_RE.fullmatch(key) is None:
            errors.insert(0, {"loc": ["header", "Idempotency-Key"],
                              "msg": "must be 1-128 printable ASCII characters",
                              "type": "string_pattern_mismatch"})
        if errors or request is None or key is None:
            await _send_json(send, 422, validation_parts(errors))
            return
        try:
            result = await self.retail.sale(request, idempotency_key=key)
        except EdgeAgentError as exc:
            status, code, text = agent_error_parts(exc)
            await _send_json(send, status, {"code": code, "message": text})
            return
        await _send_json(send, 201, result.body,
                         [(b"idempotent-replayed", b"true")] if result.replayed else [])


async def _send_json(send: Send, status: int, content: Any,
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send_body(send, status, orjson.dumps(content), headers)
