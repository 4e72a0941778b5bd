"""The store page: a dashboard a store manager opens in a browser, served by the agent's
own API listeners (``edge_agent.web.router``), with a login form on the TCP listener.
Built from the kit the central's page shares (:mod:`pagekit`): skeleton, stylesheet,
login page, session cookie, static files and the offline ``/docs``."""

from fastapi import APIRouter

from edge_agent.web.assets import router as _assets
from edge_agent.web.router import router as _page

PAGE_ROUTERS: tuple[APIRouter, ...] = (_page, _assets)  # the app includes each

__all__ = ["PAGE_ROUTERS"]
