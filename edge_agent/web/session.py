"""The store page's login session cookie (a :class:`pagekit.session.SessionCookie`): the
value a correct API token earns, which ``BearerToken`` lets through on the TCP listener.
"""

from __future__ import annotations

from typing import Final

from pagekit.session import SessionCookie

SESSION: Final = SessionCookie("edge_agent_session", b"edge-agent store page session v1")
