"""Assembly of the local API app: ``create_app`` wires the middleware, the error handlers
and every area's router over the daemon's shared services; it holds no route itself.

The areas: retail facts (:mod:`edge_agent.api.retail`), baskets and sessions
(:mod:`edge_agent.api.baskets`), live events and ops (:mod:`edge_agent.api.ops`), and the
routers of visitors, recalls, RFID, customers, the store page and orders. Every error is
JSON ``{"code": stable_code, "message": human text}`` (:mod:`edge_agent.api.errors`).
"""

from __future__ import annotations

from fastapi import FastAPI

from edge_agent.api.baskets import router as baskets_router
from edge_agent.api.errors import ApiError, LastResort, install_error_handlers
from edge_agent.api.fast_path import SalesFastPath
from edge_agent.api.metrics import Metrics
from edge_agent.api.middleware import BodyLimit, RequestMetrics
from edge_agent.api.ops import events_router
from edge_agent.api.ops import router as ops_router
from edge_agent.api.recalls import router as recalls_router
from edge_agent.api.responses import FastJSONResponse
from edge_agent.api.retail import router as retail_router
from edge_agent.customers.api import router as customers_router
from edge_agent.orders.api import router as orders_router
from edge_agent.retail import RetailService
from edge_agent.rfid.api import router as rfid_router
from edge_agent.services import AgentServices
from edge_agent.visitors.api import router as visitors_router
from edge_agent.web import PAGE_ROUTERS


def create_app(services: AgentServices, *, retail: RetailService | None = None) -> FastAPI:
    """The API app over the daemon's shared services (one app, any number of listeners)."""
    retail = retail or RetailService(services.ledger, services.config.store,
                                     controls=services.config.controls, hub=services.hub)
    metrics = Metrics()
    app = FastAPI(
        default_response_class=FastJSONResponse,
        title="edge-agent local API",
        docs_url=None,  # /docs is served by edge_agent.web.assets, with no CDN
        redoc_url=None,
        version=services.version,
        description="Store-side retail operations (sales, returns, stock movements, "
                    "click-and-collect), live device events and status. Every write takes an "
                    "Idempotency-Key header. Errors are JSON {code, message}.",
        responses={422: {"model": ApiError}, 409: {"model": ApiError},
                   503: {"model": ApiError}},
    )
    app.state.services = services
    app.state.retail = retail
    app.state.metrics = metrics
    install_error_handlers(app)
    app.add_middleware(SalesFastPath, retail=retail)
    app.add_middleware(LastResort)
    app.add_middleware(BodyLimit, max_bytes=services.config.api.max_body_bytes)
    # The order is the matching order (a router's paths never shadow a later one's).
    routers = (
        retail_router, baskets_router, events_router,
        visitors_router,  # visitors and footfall (reads app.state.services)
        recalls_router,
        rfid_router,  # RFID counts and accuracy (edge_agent.rfid)
        customers_router,
        *PAGE_ROUTERS,  # the store page (dashboard, login, charts) and the offline /docs
        orders_router,  # the fulfilment queue (edge_agent.orders)
        ops_router,
    )
    for router in routers:
        app.include_router(router)
    # A request refused before routing (413, 415) is counted under the route it was meant
    # for; the app lists an included router as one entry, so the routers' own routes are
    # the ones to match.
    app.add_middleware(RequestMetrics, requests=metrics.requests, latency=metrics.latency,
                       routes=lambda: [r for router in routers for r in router.routes])
    return app
