"""The switches' own figures, scraped from their Prometheus ``/metrics``: what the
database cannot tell (per-transport counts, latency, 91s that committed nothing,
connections).

Each scrape's counter increase since the previous scrape of the same URL is added to
the minute of the scrape (a counter that went down: the switch restarted, so its whole
value is new).  ``bpnt_request_seconds`` bucket increases give each minute's p50 and
p99 the way Prometheus's ``histogram_quantile`` does (linear within a bucket).  Every
URL's figures are summed.  An unreachable URL is reported, never raised.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

import httpx
from prometheus_client.parser import text_string_to_metric_families

from console.live.rows import minute_of
from console.live.window import WINDOW_MINUTES

K = TypeVar("K", str, float)
DEFAULT_METRICS_URLS = ("http://127.0.0.1:9585/metrics",)
SCRAPE_TIMEOUT_S = 1.5
REQUESTS = "bpnt_requests_total"
LATENCY_BUCKET = "bpnt_request_seconds_bucket"
GAUGES = ("bpnt_connections", "bpnt_inflight_requests", "bpnt_mqtt_terminals")
DB_ERRORS = "bpnt_db_errors_total"
#: The purchase MTI as the switch labels it (the request's; "0210" tolerated).
PURCHASE_MTIS = ("0200", "0210")
#: Purchase answers tracked by RC: 91, 96 and ``none`` (closed without an answer).
NO_ANSWER = "none"
TRACKED_RCS = ("91", "96", NO_ANSWER)


@dataclass
class Sample:
    """One scrape of one switch: cumulative counters and current gauges."""

    by_transport: Counter[str] = field(default_factory=Counter)
    purchase_rc: Counter[str] = field(default_factory=Counter)
    db_errors: Counter[str] = field(default_factory=Counter)
    #: upper bound (seconds, ``inf`` last) → cumulative count, summed over labels
    buckets: Counter[float] = field(default_factory=Counter)
    gauges: dict[str, float] = field(default_factory=dict)


def parse(text: str) -> Sample:
    sample = Sample()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels, value = s.labels, float(s.value)
            if s.name == REQUESTS:
                sample.by_transport[labels.get("transport", "?")] += int(value)
                if labels.get("mti") in PURCHASE_MTIS and labels.get("rc") in TRACKED_RCS:
                    sample.purchase_rc[labels["rc"]] += int(value)
            elif s.name == LATENCY_BUCKET:
                sample.buckets[float(labels.get("le", "+Inf"))] += int(value)
            elif s.name == DB_ERRORS:
                sample.db_errors[labels.get("kind", "?")] += int(value)
            elif s.name in GAUGES:
                key = s.name + "".join(f"{{{k}={v}}}" for k, v in sorted(labels.items()))
                sample.gauges[key] = sample.gauges.get(key, 0.0) + value
    return sample


def _increase(now: Counter[K], before: Counter[K]) -> Counter[K]:
    """Each key's increase (zeros kept: an empty bucket is still a bucket bound)."""
    if any(now[k] < before.get(k, 0) for k in now):
        return now.copy()  # a restart: everything counted since is new
    return Counter({k: now[k] - before.get(k, 0) for k in now})


def quantile(buckets: Counter[float], q: float) -> float | None:
    """The ``q`` quantile in seconds from cumulative ``buckets``; ``None`` if empty."""
    bounds = sorted(buckets)
    total = buckets.get(math.inf, 0) if bounds else 0
    if total <= 0:
        return None
    rank, low, below = q * total, 0.0, 0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return low
            inside = count - below
            return low + (bound - low) * ((rank - below) / inside if inside else 0.0)
        low, below = bound, count
    return low


@dataclass
class MetricsMinute:
    by_transport: Counter[str] = field(default_factory=Counter)
    purchase_rc: Counter[str] = field(default_factory=Counter)
    db_errors: Counter[str] = field(default_factory=Counter)
    buckets: Counter[float] = field(default_factory=Counter)


Fetch = Callable[[str], str]


def http_fetch(url: str) -> str:
    response = httpx.get(url, timeout=SCRAPE_TIMEOUT_S)
    response.raise_for_status()
    return response.text


@dataclass
class SwitchMetrics:
    urls: Sequence[str] = DEFAULT_METRICS_URLS
    fetch: Fetch = http_fetch
    minutes: int = WINDOW_MINUTES
    previous: dict[str, Sample] = field(default_factory=dict)
    window: dict[datetime, MetricsMinute] = field(default_factory=dict)
    gauges: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    scraped: int = 0

    def scrape(self, now: datetime) -> None:
        minute = self.window.setdefault(minute_of(now), MetricsMinute())
        gauges: dict[str, float] = {}
        self.scraped = 0
        for url in self.urls:
            try:
                sample = parse(self.fetch(url))
            except Exception as exc:  # unreachable, refused, not Prometheus text
                self.errors[url] = f"{type(exc).__name__}: {str(exc)[:120]}"
                continue
            self.errors.pop(url, None)
            self.scraped += 1
            before = self.previous.get(url)
            if before is not None:
                minute.by_transport.update(_increase(sample.by_transport,
                                                     before.by_transport))
                minute.purchase_rc.update(_increase(sample.purchase_rc, before.purchase_rc))
                minute.db_errors.update(_increase(sample.db_errors, before.db_errors))
                minute.buckets.update(_increase(sample.buckets, before.buckets))
            self.previous[url] = sample
            for key, value in sample.gauges.items():
                gauges[key] = gauges.get(key, 0.0) + value
        self.gauges = gauges
        first = minute_of(now) - timedelta(minutes=self.minutes - 1)
        for old in [m for m in self.window if m < first]:
            del self.window[old]

    @property
    def available(self) -> bool:
        return self.scraped > 0

    def minute(self, at: datetime) -> MetricsMinute:
        return self.window.get(at) or MetricsMinute()
