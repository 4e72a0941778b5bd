"""HTTP connection limits shared by the agent's API and the reference central's API:
uvicorn's httptools protocol plus a deadline on the request head.

uvicorn closes idle keep-alive connections, but not one that opens and then sends its
request head a byte at a time (or nothing at all): twenty such connections stayed open
for as long as the client liked. :class:`HeadDeadlineProtocol` closes a connection whose
request head (request line and headers) is not complete ``HEAD_TIMEOUT_S`` after the
connection opened, or after the first byte of a later request on a kept-alive
connection. Bodies and responses are not limited here (uvicorn's flow control and the
apps' own size limits apply).
"""

from __future__ import annotations

import asyncio
from typing import Final

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEAD_TIMEOUT_S: Final = 10.0
# connections served at once per listener; beyond it uvicorn answers 503 at once
MAX_CONNECTIONS: Final = 200


class HeadDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline on each request head."""

    head_timeout_s: float = HEAD_TIMEOUT_S
    _head_timer: asyncio.TimerHandle | None = None
    _head_transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_transport = transport
        self._arm_head_timer()

    def on_message_begin(self) -> None:
        if self._head_timer is None:  # a later request on a kept-alive connection
            self._arm_head_timer()
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        loop = asyncio.get_running_loop()
        self._head_timer = loop.call_later(self.head_timeout_s, self._head_expired)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        transport = self._head_transport
        if transport is not None and not transport.is_closing():
            transport.close()
