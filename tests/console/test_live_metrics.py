"""The switches' /metrics as the dashboard reads them: a tiny HTTP server serving the
switch's own prometheus-client registry (switch.metrics)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import generate_latest

from console.live.poller import Poller
from console.live.switch_metrics import SwitchMetrics, quantile
from switch.metrics import SwitchMetrics as SwitchRegistry
from tests.console.test_live_poller import _buy
from tests.world import HostWorld


@pytest.fixture
def switch_metrics() -> Iterator[tuple[SwitchRegistry, str]]:
    metrics = SwitchRegistry()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = generate_latest(metrics.registry)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield metrics, f"http://127.0.0.1:{server.server_address[1]}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _traffic(metrics: SwitchRegistry) -> None:
    metrics.requests.labels("0200", "00", "tcp").inc(30)
    metrics.requests.labels("0200", "91", "mqtt").inc(5)
    metrics.requests.labels("0100", "00", "serial").inc(2)
    metrics.requests.labels("0200", "none", "tcp").inc(2)  # closed without an answer
    for _ in range(20):
        metrics.request_seconds.labels("0200", "tcp").observe(0.01)
    for _ in range(10):
        metrics.request_seconds.labels("0200", "mqtt").observe(0.2)
    metrics.inflight_count = 3
    metrics.watch_connections("tcp", lambda: 12)


def test_rates_and_quantiles_come_from_successive_scrapes(
        world: HostWorld, switch_metrics: tuple[SwitchRegistry, str]) -> None:
    metrics, url = switch_metrics
    metrics.requests.labels("0200", "00", "tcp").inc(1000)  # before the console started
    poller = Poller(world.db, clock=world.clock.now, metrics_urls=[url])
    poller.poll_once()
    assert poller.snapshot()["series"]["by_transport"] == {}  # one scrape: no rate yet
    _traffic(metrics)
    assert _buy(world, "ok", 0) == "00"
    poller.poll_once()
    snap = poller.snapshot()
    assert snap["switch"]["available"] and snap["switch"]["errors"] == {}
    series = snap["series"]
    assert {t: s[-1] for t, s in series["by_transport"].items()} == \
        {"tcp": 32, "mqtt": 5, "serial": 2}
    assert series["failures"]["91"][-1] == 5 and snap["tiles"]["rc_91_hour"] == 5
    assert series["failures"]["no_answer"][-1] == 2 and snap["tiles"]["no_answer_hour"] == 2
    # p50: rank 15 of 30 in (0.005, 0.01] holding 20; p99: rank 29.7 in (0.1, 0.25]
    assert series["latency_ms"]["p50"][-1] == pytest.approx(8.75)
    assert series["latency_ms"]["p99"][-1] == pytest.approx(245.5)
    assert snap["switch"]["gauges"]["bpnt_inflight_requests"] == 3
    assert snap["switch"]["gauges"]["bpnt_connections{transport=tcp}"] == 12
    # five purchases answered 91 and two not at all; no reversal came yet
    assert snap["backlog"]["failed_answers"] == 7 and snap["backlog"]["outstanding"] == 7
    assert snap["tiles"]["backlog"] == 7


def test_an_unreachable_switch_is_reported_not_raised(world: HostWorld) -> None:
    poller = Poller(world.db, clock=world.clock.now,
                    metrics_urls=["http://127.0.0.1:9/metrics"])
    poller.poll_once()
    snap = poller.snapshot()
    assert not snap["switch"]["available"]
    assert "127.0.0.1:9" in next(iter(snap["switch"]["errors"]))
    assert snap["backlog"]["outstanding"] is None and snap["database"]["ok"]


def test_a_restarted_switch_counts_from_zero(world: HostWorld) -> None:
    pages = iter([
        'bpnt_requests_total{mti="0200",rc="00",transport="tcp"} 500\n',
        'bpnt_requests_total{mti="0200",rc="00",transport="tcp"} 7\n'])
    metrics = SwitchMetrics(["x"], lambda _url: next(pages))
    metrics.scrape(world.clock.now())
    metrics.scrape(world.clock.now())
    assert sum(m.by_transport["tcp"] for m in metrics.window.values()) == 7


def test_quantiles_of_empty_and_overflowing_buckets() -> None:
    from collections import Counter as Count

    assert quantile(Count(), 0.5) is None
    assert quantile(Count({0.1: 0, float("inf"): 4}), 0.5) == pytest.approx(0.1)
