"""Prometheus metrics of one switch process (issue 16; docs/METRICS.md).

:class:`SwitchMetrics` owns a ``CollectorRegistry`` of its own (not the process-wide
default: a test runs several switches in one process) and serves it on
``/metrics`` from a thread of its own (:meth:`SwitchMetrics.start_http`), so a scrape
never waits on the event loop and the event loop never waits on a scrape.

The hot path is one :class:`MeteredHandler` call per request: two dict lookups to
find the label children bound for its (MTI, RC) the first time they were seen, a
counter, a histogram, and an integer for the requests in flight.  No label string is
formatted per request.  Gauges that mirror a transport's own state (connections,
broker session, presence) are read at scrape time, by function; the host reports
once per batch (:class:`switch.host.observer.HostObserver`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from switch.host.observer import DB_ERROR_KINDS, DbErrorKind
from switch.protocol.peek import response_code, unit_mti

log = logging.getLogger("bpnt.metrics")

UnitHandler = Callable[[bytes], Awaitable[bytes | None]]
TRANSPORTS = ("tcp", "mqtt", "serial")
#: The MTIs the switch answers (HOST_SPEC §4); any other is counted as ``other``, so
#: hostile input cannot grow the label set.
KNOWN_MTIS = ("0100", "0200", "0320", "0400", "0401", "0500", "0800")
_MTI_LABELS: dict[bytes, str] = {bytes.fromhex(mti): mti for mti in KNOWN_MTIS}
OTHER_MTI = "other"
REVERSAL_MTIS = frozenset({"0400", "0401"})
#: ``rc`` of a request that got no answer (a frame dropped, a commit that failed).
NO_ANSWER = "none"
#: Seconds, frame in to answer out: 1 ms ... 10 s (the EDC's time-out is 30 s).
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                     5.0, 10.0)
#: Requests per group-commit batch (``group_commit_max_batch`` is at most 1000).
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000)
BATCH_SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                         1.0, 2.5, 5.0, 10.0)
PRESENCE_STATUSES = ("online", "offline")


class SwitchMetrics:
    """Every metric of one switch process, in a registry of its own (module docstring).
    Also the host's :class:`~switch.host.observer.HostObserver`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            "bpnt_requests", "Requests by request MTI, answer RC (none: no answer) and "
            "transport", ("mti", "rc", "transport"), registry=registry)
        self.request_seconds = Histogram(
            "bpnt_request_seconds", "Seconds from the request's frame arriving to its answer "
            "handed to the transport", ("mti", "transport"), buckets=LATENCY_BUCKETS_S,
            registry=registry)
        self.batch_size = Histogram(
            "bpnt_batch_size", "Requests per group-commit batch", buckets=BATCH_SIZE_BUCKETS,
            registry=registry)
        self.batch_seconds = Histogram(
            "bpnt_batch_seconds", "Seconds of a batch in the writer: its transaction (read, "
            "decide, write, commit) and the signing of its answers",
            buckets=BATCH_SECONDS_BUCKETS, registry=registry)
        self.db_errors = Counter(
            "bpnt_db_errors", "Database failures of a batch, by kind", ("kind",),
            registry=registry)
        self.reversals = Counter(
            "bpnt_reversals", "Reversals (0400/0401) by answer RC: terminals that timed out",
            ("rc",), registry=registry)
        self.connections = Gauge(
            "bpnt_connections", "Open TCP connections; MQTT broker session up (0/1); serial "
            "line open (0/1)", ("transport",), registry=registry)
        self.inflight = Gauge(
            "bpnt_inflight_requests", "Requests handed to the host and not answered yet",
            registry=registry)
        self.mqtt_terminals = Gauge(
            "bpnt_mqtt_terminals", "MQTT terminals by last presence seen by this switch",
            ("status",), registry=registry)
        #: Requests in flight: an int on the event loop, read by the gauge at scrape time.
        self.inflight_count = 0
        self.inflight.set_function(lambda: self.inflight_count)
        self._db_error_children = {kind: self.db_errors.labels(kind) for kind in DB_ERROR_KINDS}
        self._http: WSGIServer | None = None
        self._http_thread: threading.Thread | None = None

    # -- the host's observer (writer thread, once per batch) -------------------------------

    def batch_committed(self, requests: int, seconds: float) -> None:
        self.batch_size.observe(requests)
        self.batch_seconds.observe(seconds)

    def database_error(self, kind: DbErrorKind) -> None:
        self._db_error_children[kind].inc()

    # -- the transports ----------------------------------------------------------------------

    def metered(self, transport: str, handler: UnitHandler) -> MeteredHandler:
        """``handler`` counted and timed as ``transport``'s (see :class:`MeteredHandler`)."""
        assert transport in TRANSPORTS, transport
        return MeteredHandler(self, transport, handler)

    def watch_connections(self, transport: str, read: Callable[[], float]) -> None:
        """``bpnt_connections{transport}`` is ``read()`` at each scrape."""
        assert transport in TRANSPORTS, transport
        self.connections.labels(transport).set_function(read)

    def watch_presence(self, count: Callable[[str], int]) -> None:
        """``bpnt_mqtt_terminals{status}`` is ``count(status)`` at each scrape."""
        for status in PRESENCE_STATUSES:
            self.mqtt_terminals.labels(status).set_function(_bound(count, status))

    # -- /metrics ------------------------------------------------------------------------------

    def start_http(self, host: str, port: int) -> int | None:
        """Serve ``/metrics`` on ``host:port`` in a thread of its own; the bound port, or
        ``None`` when ``port`` is 0 (off) or cannot be bound (logged: payments go on)."""
        if port == 0:
            log.info("metrics off (BPNT_METRICS_PORT=0)")
            return None
        try:
            self._http, self._http_thread = start_http_server(port, host,
                                                              registry=self.registry)
        except OSError as exc:
            log.error("metrics: cannot listen on %s:%d (%s); serving payments without "
                      "/metrics", host, port, exc)
            return None
        bound: int = self._http.server_port
        log.info("metrics on http://%s:%d/metrics", host, bound)
        return bound

    def stop_http(self) -> None:
        """Stop serving ``/metrics`` (blocks up to the server's 0.5 s poll)."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._http_thread is not None:
            self._http_thread.join(5.0)
            self._http_thread = None


def _bound(count: Callable[[str], int], status: str) -> Callable[[], float]:
    return lambda: count(status)


class MeteredHandler:
    """A transport's unit handler, counted and timed: ``bpnt_requests_total``,
    ``bpnt_request_seconds``, ``bpnt_reversals_total`` and the requests in flight.

    ``await metered(unit)`` runs on the event loop (every transport calls the host
    there; the serial line thread hands its units over to it), so the in-flight count
    is a plain int.  :meth:`dropped` counts a request the transport took and never
    handed to the host (``rc="none"``).
    """

    def __init__(self, metrics: SwitchMetrics, transport: str, handler: UnitHandler) -> None:
        self._metrics = metrics
        self._transport = transport
        self._handler = handler
        #: (MTI label, RC bytes) -> (requests child, latency child, reversals child).
        self._children: dict[tuple[str, bytes | None], tuple[Any, Any, Any]] = {}

    async def __call__(self, unit: bytes) -> bytes | None:
        metrics = self._metrics
        metrics.inflight_count += 1
        started = time.perf_counter()
        answer: bytes | None = None
        try:
            answer = await self._handler(unit)
        finally:
            metrics.inflight_count -= 1
            self._count(unit, answer, time.perf_counter() - started)
        return answer

    def dropped(self, unit: bytes) -> None:
        """A request taken off the transport and not handed to the host (no answer)."""
        self._count(unit, None, 0.0)

    def _count(self, unit: bytes, answer: bytes | None, latency_s: float) -> None:
        mti = _MTI_LABELS.get(unit_mti(unit), OTHER_MTI)
        rc = response_code(answer) if answer is not None else None
        children = self._children.get((mti, rc))
        if children is None:
            children = self._bind(mti, rc)
        requests, latency, reversals = children
        requests.inc()
        latency.observe(latency_s)
        if reversals is not None:
            reversals.inc()

    def _bind(self, mti: str, rc: bytes | None) -> tuple[Any, Any, Any]:
        """The label children of (``mti``, ``rc``), made once (the RCs are the switch's
        own: a bounded set)."""
        metrics = self._metrics
        rc_label = NO_ANSWER if rc is None else rc.decode("ascii", "replace")
        children = (metrics.requests.labels(mti, rc_label, self._transport),
                    metrics.request_seconds.labels(mti, self._transport),
                    metrics.reversals.labels(rc_label) if mti in REVERSAL_MTIS else None)
        self._children[(mti, rc)] = children
        return children
