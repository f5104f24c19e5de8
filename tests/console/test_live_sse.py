"""The dashboard's server-sent events over a real HTTP connection: a changed snapshot
after new traffic, an e-warong's scope, the end of a stream when its client goes and
when the console shuts down; the JSON API; the page itself."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from console.live.poller import Poller
from switch.protocol import codes
from tests.console.helpers import RICE, ConsoleWorld, login
from tests.console.live_server import LiveServer, served, wait_until

READ_TIMEOUT_S = 10.0
CHANGE_TIMEOUT_S = 20.0


def _fast_poller(console: ConsoleWorld) -> Poller:
    """The app's poller, polling every 0.2 s (set before the app starts it)."""
    app = console.app
    poller = Poller(app.state.db, interval_s=0.2, metrics_urls=[],
                    clock=console.world.clock.now)
    app.state.live_poller = poller
    return poller


def _client(server: LiveServer, console: ConsoleWorld, role: str) -> httpx.Client:
    client = httpx.Client(base_url=server.url, timeout=READ_TIMEOUT_S)
    login(client, *console.logins[role])  # type: ignore[arg-type]
    return client


def _snapshots(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """The ``snapshot`` events of an SSE stream, as they come."""
    name = None
    for line in lines:
        if line.startswith("event: "):
            name = line[len("event: "):]
        elif line.startswith("data: ") and name == "snapshot":
            yield json.loads(line[len("data: "):])


def _until(events: Iterator[dict[str, Any]], done: Callable[[dict[str, Any]], bool]) -> None:
    """Read snapshots until one is ``done`` (a stuck stream fails on its read time-out)."""
    deadline = time.monotonic() + CHANGE_TIMEOUT_S
    for snapshot in events:
        if done(snapshot):
            return
        assert time.monotonic() < deadline, "no such snapshot came"
    raise AssertionError("the stream ended")


def _buy(console: ConsoleWorld, card_index: int) -> None:
    world = console.world
    edc = world.edc(world.terminal(index=0))
    edc.stan = 500 + card_index  # past the STANs of the console world's purchases
    card = world.card(index=card_index)
    world.insert(edc, card)
    assert edc.logon().rc == codes.APPROVED
    assert edc.purchase([RICE], card.pin).rc == codes.APPROVED


def test_the_stream_carries_new_traffic_in_the_users_scope(console: ConsoleWorld) -> None:
    _fast_poller(console)
    with served(console.app) as server:
        admin, shop = _client(server, console, "admin"), _client(server, console, "ewarong")
        with admin.stream("GET", "/events/dashboard") as a_stream, \
                shop.stream("GET", "/events/dashboard") as s_stream:
            assert a_stream.headers["content-type"].startswith("text/event-stream")
            a_events, s_events = _snapshots(a_stream.iter_lines()), \
                _snapshots(s_stream.iter_lines())
            first_a, first_s = next(a_events), next(s_events)
            # the console world's purchases: one at each of two e-warongs
            assert first_a["tiles"]["approved_hour"] == 2
            assert first_s["tiles"]["approved_hour"] == 1
            assert first_s["scope"]["mid"] == console.own_mid
            assert [e["mid"] for e in first_s["ewarongs"]] == [console.own_mid]
            _buy(console, 5)  # at the ewarong user's e-warong
            _until(a_events, lambda s: s["tiles"]["approved_hour"] == 3)
            _until(s_events, lambda s: s["tiles"]["approved_hour"] == 2)  # its 1 + 1
        api = httpx.get(f"{server.url}/api/v1/dashboard")
        assert api.status_code == 401  # the API takes a bearer token, not a session
        admin.close()
        shop.close()


def test_a_stream_ends_when_its_client_goes_and_when_the_console_stops(
        sqlite_console: ConsoleWorld) -> None:
    console = sqlite_console
    poller = _fast_poller(console)
    clients = console.app.state.metrics.sse_clients
    server = LiveServer(console.app)
    server.start()
    try:
        admin = _client(server, console, "operator")
        with admin.stream("GET", "/events/dashboard") as stream:
            # Hold the reader: a line iterator dropped after one event is closed at
            # once, and with it (httpcore) the connection, so the server could see the
            # client go before the count is checked.
            reading = _snapshots(stream.iter_lines())
            next(reading)
            assert clients._value.get() == 1
        wait_until(lambda: clients._value.get() == 0, 10, "the stream did not end")
        held = admin.stream("GET", "/events/dashboard")
        events = _snapshots(held.__enter__().iter_lines())
        next(events)
        assert poller.running
    finally:
        assert server.stop(timeout_s=15), "the console did not shut down"
    assert not poller.running
    assert clients._value.get() == 0
    held.__exit__(None, None, None)
    admin.close()


def test_the_page_carries_a_first_snapshot(sqlite_console: ConsoleWorld) -> None:
    console = sqlite_console
    client = console.client("auditor")
    page = client.get("/")
    assert page.status_code == 200
    assert 'data-events="/events/dashboard"' in page.text
    assert "/static/vendor/chart.umd.js" in page.text and "/static/dashboard.js" in page.text
    assert "&#34;approved_hour&#34;: 2" in page.text
