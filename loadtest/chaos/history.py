"""What the terminals saw, transport-neutral: one record per exchange with the host.

A purchase is named by its idempotency key (HOST_SPEC §4: TID, DE 13, DE 11); its
reversals carry the same key.  Times are seconds since the run began (one monotonic
clock for the terminals and the harness's timeline), so the checker and the report
can put what a terminal saw next to what the harness did.

Outcomes, and what each means for money (the checker's reading, Jepsen's ok / fail /
info):

* ``answered``: a response arrived whose MAC verified (or that carried none);
  ``rc`` and ``signed`` say what it was.  00 signed: ok.  An unsigned 91 is treated
  like no answer (HOST_SPEC §6): info, the reversal stays pending.  Any other: fail;
* ``not-sent``: the link could not be opened, the request certainly never left: fail;
* ``timeout``, ``link-down`` (the connection broke after the send), ``bad-response``
  (unreadable, wrong STAN, MAC that does not verify, approval without a MAC): info.

Terminals of any transport (TCP, MQTT, serial, through a fault proxy) write the same
records; nothing here knows which link carried them.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from switch.protocol import codes

PURCHASE = "purchase"
REVERSAL = "reversal"
LOGON = "logon"

ANSWERED = "answered"
NOT_SENT = "not-sent"
TIMEOUT = "timeout"
LINK_DOWN = "link-down"
BAD_RESPONSE = "bad-response"
OUTCOMES = (ANSWERED, NOT_SENT, TIMEOUT, LINK_DOWN, BAD_RESPONSE)


def key_of(tid: str, local_date: str, stan: str) -> str:
    """The idempotency key as text: ``TID/MMDD/STAN``."""
    return f"{tid}/{local_date}/{stan}"


@dataclass(frozen=True)
class Exchange:
    """One request a terminal sent (or tried to send), and what came of it."""

    op: str
    tid: str
    #: The key of the purchase (a reversal's is its original's); "" for a logon.
    key: str
    mti: str
    amount_sen: int
    sent_s: float
    done_s: float
    outcome: str
    rc: str | None = None
    #: Whether the response carried DE 64 (it verified, or the outcome is bad-response).
    signed: bool = False
    rrn: str | None = None
    #: A purchase: when the load wanted it sent (its lateness is sent_s - scheduled_s).
    scheduled_s: float | None = None
    detail: str = ""

    def __post_init__(self) -> None:
        assert self.outcome in OUTCOMES, f"unknown outcome {self.outcome}"
        assert self.outcome == ANSWERED or self.rc is None, "an RC without an answer"

    @property
    def latency_ms(self) -> float:
        return (self.done_s - self.sent_s) * 1e3

    @property
    def approved(self) -> bool:
        return self.outcome == ANSWERED and self.rc == codes.APPROVED

    @property
    def unsigned_91(self) -> bool:
        return self.outcome == ANSWERED and self.rc == codes.HOST_UNAVAILABLE and not self.signed

    @property
    def indeterminate(self) -> bool:
        """The terminal cannot know whether the host acted on it (reverse it)."""
        return self.outcome in (TIMEOUT, LINK_DOWN, BAD_RESPONSE) or self.unsigned_91

    def to_json(self) -> dict[str, Any]:
        return {"type": "exchange", **asdict(self)}


@dataclass(frozen=True)
class Skip:
    """A purchase the load wanted but the terminal did not start: a reversal was still
    pending (HOST_SPEC §5: it goes first), or the terminal could not log on."""

    tid: str
    at_s: float
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"type": "skip", **asdict(self)}


@dataclass(frozen=True)
class Mark:
    """A moment of the harness's timeline (a fault began, a switch listens again...)."""

    at_s: float
    label: str
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"type": "mark", **asdict(self)}


@dataclass(frozen=True)
class Window:
    """A fault's span on the timeline (shaded in the plot)."""

    label: str
    start_s: float
    end_s: float

    def to_json(self) -> dict[str, Any]:
        return {"type": "window", **asdict(self)}


class RunClock:
    """Seconds since the run began, on the monotonic clock."""

    def __init__(self) -> None:
        self.started_monotonic = time.monotonic()
        self.started_epoch = time.time()

    def now_s(self) -> float:
        return time.monotonic() - self.started_monotonic


@dataclass
class History:
    """Every terminal appends here (thread-safe); the harness adds marks and windows."""

    clock: RunClock = field(default_factory=RunClock)
    exchanges: list[Exchange] = field(default_factory=list)
    skips: list[Skip] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, exchange: Exchange) -> None:
        with self._lock:
            self.exchanges.append(exchange)

    def skip(self, tid: str, reason: str) -> None:
        with self._lock:
            self.skips.append(Skip(tid, self.clock.now_s(), reason))

    def mark(self, label: str, detail: str = "") -> Mark:
        mark = Mark(self.clock.now_s(), label, detail)
        with self._lock:
            self.marks.append(mark)
        return mark

    def window(self, label: str, start_s: float, end_s: float) -> Window:
        window = Window(label, start_s, end_s)
        with self._lock:
            self.windows.append(window)
        return window

    def snapshot(self) -> list[Exchange]:
        with self._lock:
            return list(self.exchanges)

    def records(self) -> Iterator[dict[str, Any]]:
        with self._lock:
            items: list[Exchange | Skip | Mark | Window] = [
                *self.exchanges, *self.skips, *self.marks, *self.windows]
        yield {"type": "run", "started_epoch": self.clock.started_epoch}
        for item in sorted(items, key=_at):
            yield item.to_json()

    def write_jsonl(self, path: Path) -> None:
        with path.open("w", encoding="utf-8") as handle:
            for record in self.records():
                handle.write(json.dumps(record, sort_keys=True) + "\n")


def _at(item: Exchange | Skip | Mark | Window) -> float:
    if isinstance(item, Exchange):
        return item.sent_s
    if isinstance(item, Window):
        return item.start_s
    return item.at_s


def read_jsonl(path: Path) -> list[Exchange]:
    """The exchanges of a ``history.jsonl`` (to re-check a run later)."""
    return list(exchanges_of(json.loads(line) for line in
                             path.read_text(encoding="utf-8").splitlines() if line))


def exchanges_of(records: Iterable[dict[str, Any]]) -> Iterator[Exchange]:
    for record in records:
        if record.get("type") == "exchange":
            fields = {k: v for k, v in record.items() if k != "type"}
            yield Exchange(**fields)
