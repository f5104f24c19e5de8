"""The console's own ``/metrics`` (its own prometheus-client registry): requests by
route and status, time per request, SSE clients connected, database time."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ConsoleMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("bpnt_console_requests_total",
                                "HTTP requests answered, by route template and status",
                                ["route", "method", "status"], registry=self.registry)
        self.request_seconds = Histogram("bpnt_console_request_seconds",
                                         "Time to answer a request, by route template",
                                         ["route"], registry=self.registry)
        #: The live dashboard's server-sent event streams (console/live increments it).
        self.sse_clients = Gauge("bpnt_console_sse_clients",
                                 "Server-sent event clients connected", registry=self.registry)
        self.query_seconds = Histogram("bpnt_console_query_seconds",
                                       "Time in database transactions of the console",
                                       registry=self.registry)

    def observe_query(self, seconds: float) -> None:
        self.query_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def route_template(scope: Scope) -> str:
    """The matched route's path template (``/kpm/{kpm_id}``), never the raw path (a
    label per RRN would grow without bound)."""
    app = scope.get("app")
    for route in getattr(app, "routes", []):
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return str(getattr(route, "path", "other"))
    return "unmatched"


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: ConsoleMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = [500]
        started = time.perf_counter()

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = route_template(scope)
            self.metrics.requests.labels(route, scope["method"], str(status[0])).inc()
            self.metrics.request_seconds.labels(route).observe(time.perf_counter() - started)


def metrics_endpoint(request: Request) -> Response:
    metrics: ConsoleMetrics = request.app.state.metrics
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)
