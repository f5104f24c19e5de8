"""``make load``'s check of the switch's ``/metrics`` against Locust (issue 16).

Each Locust request event is one exchange of one EDC: its name says the request type
(``purchase``, ``purchase 51``, ``purchase lost-response``, ``reversal``, ``logon``,
``balance 55``), and the type fixes the request's MTI.  The switch counts the same
exchanges in ``bpnt_requests_total{mti}``:

* at the end, after the users stopped and delivered their reversals, the two are
  equal per type (a terminal's own extra exchange, such as a reversal's 0401 repeat
  after a time-out or the logon after an RC 63, is counted by the switch and not by
  Locust, and shows as a difference).  The one allowance: a user Locust killed in the
  middle of a transaction (the terminals' tally counts them as ``interrupted``) may
  have sent its request without reporting it, so the switch may count up to that many
  more exchanges in all, never fewer;
* in the middle of the run, Locust's count read just before the scrape is at most
  the switch's, and the switch's at most Locust's read just after plus the requests
  in flight: one per terminal (an EDC has one request out at a time).  With Locust
  workers the master's figures lag by up to the workers' report interval, so the upper
  bound is then only printed.

Nothing here imports locust (``loadtest.load`` must not meet gevent).
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

#: Locust request type (the first word of its name) -> the MTIs the switch sees for it.
TYPE_MTIS: dict[str, tuple[str, ...]] = {
    "logon": ("0800",), "balance": ("0100",), "purchase": ("0200",),
    "reversal": ("0400", "0401")}
HTTP_TIMEOUT_S = 5.0


def request_type(locust_name: str) -> str:
    """``purchase 51`` -> ``purchase``."""
    return locust_name.split(" ", 1)[0]


def locust_counts(rows: Iterable[tuple[str, int]]) -> dict[str, int]:
    """(name, request count) rows of Locust's stats (``Aggregated`` left out), summed
    per request type."""
    counts = dict.fromkeys(TYPE_MTIS, 0)
    for name, requests in rows:
        if name != "Aggregated":
            kind = request_type(name)
            counts[kind] = counts.get(kind, 0) + requests
    return counts


def locust_web_counts(web_url: str) -> dict[str, int]:
    """The counts per request type on Locust's ``/stats/requests`` now."""
    with urllib.request.urlopen(f"{web_url}/stats/requests", timeout=HTTP_TIMEOUT_S) as page:
        report = json.load(page)
    return locust_counts((s["name"], int(s["num_requests"])) for s in report["stats"])


def switch_counts(metrics_url: str) -> dict[str, int]:
    """``bpnt_requests_total`` summed per Locust request type (by MTI); ``other`` for
    MTIs no Locust type sends."""
    with urllib.request.urlopen(metrics_url, timeout=HTTP_TIMEOUT_S) as page:
        text = page.read().decode()
    by_mti: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "bpnt_requests_total":
                mti = sample.labels["mti"]
                by_mti[mti] = by_mti.get(mti, 0.0) + sample.value
    counts = {kind: round(sum(by_mti.pop(mti, 0.0) for mti in mtis))
              for kind, mtis in TYPE_MTIS.items()}
    counts["other"] = round(sum(by_mti.values()))
    return counts


@dataclass(frozen=True)
class MidRun:
    """Locust's counts read before and after one scrape of the switch."""

    at_s: float
    locust_before: dict[str, int]
    switch: dict[str, int]
    locust_after: dict[str, int]

    def problems(self, terminals: int, *, upper_bound: bool) -> list[str]:
        found = []
        for kind in TYPE_MTIS:
            low, seen, high = (self.locust_before[kind], self.switch[kind],
                               self.locust_after[kind])
            if seen < low:
                found.append(f"mid-run {kind}: the switch counted {seen}, fewer than "
                             f"Locust's {low}")
            if upper_bound and seen > high + terminals:
                found.append(f"mid-run {kind}: the switch counted {seen}, more than "
                             f"Locust's {high} + {terminals} in flight")
        if self.switch.get("other"):
            found.append(f"mid-run: {self.switch['other']} requests of no Locust type")
        return found


def end_problems(locust: dict[str, int], switch: dict[str, int], *,
                 interrupted: int = 0) -> list[str]:
    """The types whose counts differ at the end beyond what ``interrupted``
    transactions (sent, then their user killed before it reported) explain: the switch
    may count at most that many more exchanges in all, and never fewer than Locust."""
    differences = {kind: switch.get(kind, 0) - locust.get(kind, 0) for kind in TYPE_MTIS}
    unexplained = (any(d < 0 for d in differences.values())
                   or sum(differences.values()) > interrupted)
    found = [f"{kind}: Locust {locust.get(kind, 0)}, switch {switch.get(kind, 0)}"
             for kind, d in differences.items() if d and unexplained]
    if switch.get("other"):
        found.append(f"switch: {switch['other']} requests of no Locust type")
    return found


def table(locust: dict[str, int], switch: dict[str, int], mid: MidRun | None) -> list[str]:
    """The comparison, one line per request type (and the mid-run scrape's sandwich)."""
    head = f"  {'request type':12} {'MTI':9} {'Locust':>7} {'/metrics':>8} {'diff':>5}"
    when = "" if mid is None else f"mid-run at {mid.at_s:.1f} s:"
    if mid is not None:
        head += f" | {when} {'Locust':>7} {'/metrics':>8} {'Locust':>7}"
    lines = [head]
    for kind, mtis in TYPE_MTIS.items():
        ours, theirs = switch.get(kind, 0), locust.get(kind, 0)
        line = f"  {kind:12} {'/'.join(mtis):9} {theirs:7} {ours:8} {ours - theirs:+5}"
        if mid is not None:
            line += (f" | {'':{len(when)}} {mid.locust_before[kind]:7} {mid.switch[kind]:8} "
                     f"{mid.locust_after[kind]:7}")
        lines.append(line)
    return lines


@dataclass
class Scrapes:
    """The run's scrapes of the switch's ``metrics_url``: one in the middle (with
    Locust's counts around it) and one at the end."""

    metrics_url: str
    #: EDC users at the peak: the requests that can be in flight at once.
    terminals: int
    #: Locust workers: the master's counts lag, so no upper bound in the middle.
    workers: int
    mid: MidRun | None = None
    final: dict[str, int] | None = None
    failures: list[str] = field(default_factory=list)

    def mid_run(self, web_url: str, started: float, out: Callable[[str], None]) -> None:
        """Locust's counts, the switch's, Locust's again (``started``: the run's start,
        monotonic)."""
        at_s = time.monotonic() - started
        try:
            before = locust_web_counts(web_url)
            switch = switch_counts(self.metrics_url)
            after = locust_web_counts(web_url)
        except (OSError, ValueError, KeyError) as exc:
            self.failures.append(f"the mid-run scrape failed: {exc}")
            return
        self.mid = MidRun(at_s, before, switch, after)
        out(f"mid-run scrape at {at_s:.0f} s: {sum(switch.values())} requests counted by "
            f"the switch, {sum(before.values())}..{sum(after.values())} by Locust")

    def at_end(self) -> None:
        try:
            self.final = switch_counts(self.metrics_url)
        except (OSError, ValueError) as exc:
            self.failures.append(f"the final scrape failed: {exc}")

    def report(self, locust: dict[str, int], *, whole_run: bool, interrupted: int,
               out: Callable[[str], None]) -> list[str]:
        """Print the comparison; the problems.  ``whole_run``: Locust's stats hold every
        request of the run (not so after a re-run from the web UI); ``interrupted``:
        the transactions whose user Locust killed half-way (the terminals' tally)."""
        problems = list(self.failures)
        out(f"\n  {self.metrics_url} against Locust, per request type:")
        for line in table(locust, self.final or {}, self.mid):
            out(line)
        if self.mid is not None:
            problems += self.mid.problems(self.terminals, upper_bound=not self.workers)
        if self.final is not None:
            differences = end_problems(locust, self.final, interrupted=interrupted)
            if interrupted and not differences:
                out(f"  ({interrupted} transaction(s) interrupted by a user stop: the switch "
                    f"may count up to that many exchanges Locust never reported)")
            if differences and whole_run:
                problems.append("/metrics differs from Locust at the end: "
                                + "; ".join(differences))
            elif differences:
                out("  (Locust's stats hold the last test only: the end is not compared)")
        return problems
