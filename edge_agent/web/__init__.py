"""The store page: a dashboard a store manager opens in a browser, served by the agent's
own API listeners (``edge_agent.web.router``), with a login form on the TCP listener."""

from fastapi import APIRouter

from edge_agent.web.assets import router as _assets
from edge_agent.web.router import router as _page

pages_router = APIRouter()
pages_router.include_router(_page)
pages_router.include_router(_assets)

__all__ = ["pages_router"]
