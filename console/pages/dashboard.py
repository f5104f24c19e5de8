"""The live dashboard (issue 16): ``/`` the page, ``/events/dashboard`` its
server-sent events, ``/api/v1/dashboard`` the same snapshot as JSON.

One :class:`~console.live.poller.Poller` per console process reads the database and
the switches' metrics; every open page streams its snapshots.  An ``ewarong`` user's
snapshot is its own e-warong's (:func:`console.auth.scope_of`).  The app starts and
stops the poller in its lifespan (:func:`live_lifespan`); an app that does not (a
test's) gets one started on the first request.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import Gauge
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from console.auth import require, scope_of
from console.live.poller import Poller
from console.live.sse import snapshots
from console.views import render

PERMISSION = "view_dashboard"
FIRST_POLL_TIMEOUT_S = 10.0


def _new_poller(app: Starlette) -> Poller:
    settings = app.state.settings
    return Poller(app.state.db,
                  interval_s=float(getattr(settings, "dashboard_interval_s", 2.0)),
                  metrics_urls=list(settings.switch_metrics_urls), clock=app.state.clock.now)


async def start_live(app: Starlette) -> Poller:
    """The app's poller, started (once)."""
    poller: Poller | None = getattr(app.state, "live_poller", None)
    if poller is None:
        poller = app.state.live_poller = _new_poller(app)
    await poller.start()
    if poller.version == 0:  # the first poll (the back-fill) is under way: wait for it
        await poller.wait_for_version(0, FIRST_POLL_TIMEOUT_S)
    return poller


async def stop_live(app: Starlette) -> None:
    poller: Poller | None = getattr(app.state, "live_poller", None)
    if poller is not None:
        await poller.stop()


@asynccontextmanager
async def live_lifespan(app: Starlette) -> AsyncIterator[None]:
    """For ``Starlette(lifespan=...)``: the poller runs while the app does."""
    await start_live(app)
    try:
        yield
    finally:
        await stop_live(app)


async def dashboard(request: Request) -> Response:
    user = require(request, PERMISSION)
    poller = await start_live(request.app)
    snapshot = poller.snapshot(scope_of(user))
    return render(request, "dashboard.html", user, snapshot_json=json.dumps(snapshot))


async def _counted(stream: AsyncIterator[str], clients: Gauge | None) -> AsyncIterator[str]:
    """``stream``, with the console's SSE client gauge up while it runs."""
    if clients is not None:
        clients.inc()
    try:
        async for chunk in stream:
            yield chunk
    finally:
        if clients is not None:
            clients.dec()


async def events(request: Request) -> Response:
    user = require(request, PERMISSION)
    poller = await start_live(request.app)
    metrics = getattr(request.app.state, "metrics", None)
    stream = _counted(snapshots(poller, scope_of(user)),
                      metrics.sse_clients if metrics is not None else None)
    return StreamingResponse(stream, media_type="text/event-stream",
                             headers={"cache-control": "no-store", "x-accel-buffering": "no"})


async def api_dashboard(request: Request) -> Response:
    user = require(request, PERMISSION)
    poller = await start_live(request.app)
    return JSONResponse(poller.snapshot(scope_of(user)))


ROUTES: list[BaseRoute] = [
    Route("/", dashboard),
    Route("/events/dashboard", events),
    Route("/api/v1/dashboard", api_dashboard),
]
