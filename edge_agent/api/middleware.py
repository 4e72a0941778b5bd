"""Pure ASGI middleware: request body limit, bearer token (or page session) for TCP,
request metrics."""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from prometheus_client import Counter, Histogram
from starlette.routing import Match

from edge_agent.web.session import SESSION
from sync.wire import canonical_json

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def send_body(send: Send, status: int, body: bytes,
                    headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """A whole JSON response (``body`` already encoded) straight to ASGI's ``send``."""
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        *(headers or []),
    ]})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, status: int, code: str, message: str,
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send_body(send, status, canonical_json({"code": code, "message": message}), headers)


def _json_media_type(value: bytes) -> bool:
    media = value.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/")
                                            and media.endswith(b"+json"))


class BodyLimit:
    """Refuse request bodies above ``max_bytes`` with 413 ``body_too_large``, and a
    non-empty body that is not declared JSON (``Content-Type: application/json``) with 415
    ``unsupported_media_type``: every body of this API is JSON, and a ``text/plain`` or
    form body must not be read as JSON by chance (the login form alone posts a form).

    The body is read from the stream and counted (a missing or lying Content-Length does
    not get past it), then handed to the app in one piece; bodies are small (256 KiB by
    default), so buffering them costs nothing worth streaming for."""

    FORM_PATHS = frozenset({"/login"})  # the store page's login form posts a form

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = (
            f"the request body is larger than the limit of {self.max_bytes} bytes "
            "(api.max_body_bytes)"
        )
        content_type: bytes | None = None
        for name, value in scope.get("headers", []):
            if name == b"content-type":
                content_type = value
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await send_error(send, 400, "bad_request", "invalid Content-Length")
                    return
                if declared > self.max_bytes:
                    await send_error(send, 413, "body_too_large", too_large,
                                     [(b"connection", b"close")])
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # disconnected before the body ended
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await send_error(send, 413, "body_too_large", too_large,
                                 [(b"connection", b"close")])
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        if size and (content_type is None or not _json_media_type(content_type)) \
                and scope.get("path") not in self.FORM_PATHS:
            given = "no Content-Type" if content_type is None else \
                f"Content-Type {content_type.decode('latin-1')[:60]!r}"
            await send_error(send, 415, "unsupported_media_type",
                             f"request bodies are JSON: send Content-Type: application/json "
                             f"(got {given})")
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class BearerToken:
    """Require ``Authorization: Bearer <token>`` or the store page's session cookie (both
    compared in constant time). Only the login form (``/login``) and the page's static
    files pass without either; a browser asking for a page is sent to the login form, an
    API client gets 401 ``unauthorized``."""

    PUBLIC_PATHS = frozenset({"/login"})
    PUBLIC_PREFIXES = ("/ui/static/",)

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()
        self._session = SESSION.value(self._token)

    def _authorized(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(),
                                                                       self._token):
                    return True
            elif name == b"cookie" and SESSION.valid(value, self._session):
                return True
        path = str(scope.get("path", ""))
        return path in self.PUBLIC_PATHS or path.startswith(self.PUBLIC_PREFIXES)

    @staticmethod
    def _bearer_given(scope: Scope) -> bool:
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                return scheme.lower() == b"bearer" and bool(token.strip())
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._authorized(scope):
            if scope.get("method") == "GET" and _wants_html(scope):
                await send({"type": "http.response.start", "status": 303, "headers": [
                    (b"location", b"/login"), (b"content-length", b"0")]})
                await send({"type": "http.response.body", "body": b""})
                return
            if self._bearer_given(scope):
                await send_error(send, 401, "invalid_token",
                                 "the bearer token is not this agent's: use the token of "
                                 "api.tcp.token_file (or the api-token credential)",
                                 [(b"www-authenticate", b'Bearer error="invalid_token"')])
                return
            await send_error(send, 401, "unauthorized",
                             "a bearer token is required on the TCP listener "
                             "(Authorization: Bearer <the token of api.tcp.token_file>)",
                             [(b"www-authenticate", b"Bearer")])
            return
        await self.app(scope, receive, send)


def _wants_html(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"accept":
            return b"text/html" in value
    return False


class RequestMetrics:
    """Count requests and time them per route template (never per raw path)."""

    def __init__(self, app: ASGIApp, requests: Counter, latency: Histogram,
                 routes: Callable[[], Sequence[Any]] = tuple) -> None:
        self.app = app
        self.requests = requests
        self.latency = latency
        self.routes = routes
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            route = scope.get("route") or self._match(scope)
            template = getattr(route, "path", None) or "unmatched"
            key = (str(scope.get("method", "?")), template, str(status))
            children = self._children.get(key)
            if children is None:  # label lookups cost more than the observation itself
                children = (self.requests.labels(*key), self.latency.labels(template))
                self._children[key] = children
            children[0].inc()
            children[1].observe(time.perf_counter() - started)

    def _match(self, scope: Scope) -> Any:
        """The route a request refused before routing (413, 415) was meant for."""
        for route in self.routes():
            matches = getattr(route, "matches", None)
            if matches is not None and matches(scope)[0] != Match.NONE:
                return route
        return None
