"""The open-loop TCP load generator of :mod:`loadtest.bench` (asyncio, one process).

Request ``i`` of a point is *scheduled* at ``start + i / rate`` whatever happened
to the requests before it, and its latency is measured from that scheduled time,
so a slow switch cannot hide behind a generator that waited for it (coordinated
omission).  Each connection carries one request at a time (HOST_SPEC §1, like an
EDC); a request takes whichever connection is idle.  When none is idle the send
is late, and the lateness is part of its latency (and counted as a late send).

A request with no answer within ``timeout_s`` of its scheduled time is a time-out:
``timeout`` if it was sent (its connection is then closed and reopened, as an EDC
would), ``timeout-unsent`` if no connection came free in time.  A connection the
switch closes before answering gives ``closed-by-switch`` (its connection limits:
see the switch log), any other socket failure ``link-down``.  No reversal is
sent for it: the bench measures the purchase path only, and the money invariant
is checked on the ledger afterwards whatever the switch did with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections import Counter
from dataclasses import dataclass, field

from switch.protocol.framing import LENGTH_PREFIX_BYTES, frame_tcp
from switch.protocol.unit import decode_unit

HOST = "127.0.0.1"
CONNECT_TIMEOUT_S = 5.0
#: A send more than this after its scheduled time counts as late.
LATE_SEND_S = 0.005
#: Connections are (re)opened this many times before one is given up.
REOPEN_ATTEMPTS = 3
START_DELAY_S = 0.2


@dataclass
class Outcome:
    scheduled: float
    sent: float | None = None
    done: float | None = None
    response: bytes | None = None
    error: str | None = None


@dataclass
class PointStats:
    """One offered rate, reduced to the figures the bench reports."""

    rate: float
    duration_s: float
    scheduled: int
    sent: int
    approved: int
    approved_per_s: float
    declines: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    #: Latency percentiles in ms from the scheduled send; ``inf`` when that
    #: percentile falls among the requests that got no answer.
    p50_ms: float = math.inf
    p95_ms: float = math.inf
    p99_ms: float = math.inf
    max_ms: float = math.inf
    late_sends: int = 0
    gen_cpu_pct: float = 0.0
    switch_cpu_pct: float = 0.0
    db_cpu_pct: float = 0.0
    #: HAProxy's, when the load goes through it (bench --haproxy).
    lb_cpu_pct: float = 0.0
    wall_s: float = 0.0


class _Conn:
    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection(HOST, self.port), CONNECT_TIMEOUT_S)

    async def exchange(self, unit: bytes) -> bytes:
        assert self.reader is not None and self.writer is not None
        self.writer.write(frame_tcp(unit))
        await self.writer.drain()
        head = await self.reader.readexactly(LENGTH_PREFIX_BYTES)
        return await self.reader.readexactly(int.from_bytes(head, "big"))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _open_all(ports: list[int], connections: int) -> list[_Conn]:
    conns = [_Conn(ports[i % len(ports)]) for i in range(connections)]
    for start in range(0, len(conns), 64):  # not a SYN storm at the listen backlog
        await asyncio.gather(*(c.open() for c in conns[start:start + 64]))
    return conns


async def run_point(units: list[bytes], rate: float, ports: list[int], connections: int,
                    timeout_s: float) -> tuple[list[Outcome], float, float]:
    """Offer ``units`` at ``rate``/s; returns the outcomes, the start time (loop clock)
    and the generator's CPU seconds."""
    loop = asyncio.get_running_loop()
    conns = await _open_all(ports, connections)
    idle: asyncio.Queue[_Conn] = asyncio.Queue()
    for conn in conns:
        idle.put_nowait(conn)
    cpu0 = time.process_time()
    start = loop.time() + START_DELAY_S
    outcomes = [Outcome(start + i / rate) for i in range(len(units))]
    tasks: set[asyncio.Task[None]] = set()

    async def recycle(conn: _Conn) -> None:
        conn.close()
        for _ in range(REOPEN_ATTEMPTS):
            with contextlib.suppress(OSError, TimeoutError):
                await conn.open()
                idle.put_nowait(conn)
                return

    async def one(outcome: Outcome, conn: _Conn, unit: bytes) -> None:
        outcome.sent = loop.time()
        try:
            async with asyncio.timeout_at(outcome.scheduled + timeout_s):
                outcome.response = await conn.exchange(unit)
            outcome.done = loop.time()
            idle.put_nowait(conn)
        except TimeoutError:
            outcome.error = "timeout"
            await recycle(conn)
        except asyncio.IncompleteReadError as exc:
            # EOF: on a fresh connection, the switch refusing it (connection limits).
            outcome.error = "closed-by-switch" if not exc.partial else "link-down"
            await recycle(conn)
        except OSError:
            outcome.error = "link-down"
            await recycle(conn)

    for outcome, unit in zip(outcomes, units, strict=True):
        delay = outcome.scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            async with asyncio.timeout_at(outcome.scheduled + timeout_s):
                conn = await idle.get()
        except TimeoutError:
            outcome.error = "timeout-unsent"
            continue
        task = asyncio.create_task(one(outcome, conn, unit))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(set(tasks), timeout=timeout_s + CONNECT_TIMEOUT_S * REOPEN_ATTEMPTS)
    for task in list(tasks):
        task.cancel()
    for conn in conns:
        conn.close()
    return outcomes, start, time.process_time() - cpu0


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of ``pids`` from /proc (Linux); 0 where unreadable."""
    return sum(cpu_by_pid(pids).values())


def cpu_by_pid(pids: list[int]) -> dict[int, float]:
    """utime + stime of each readable pid of ``pids``, from /proc (Linux)."""
    ticks = os.sysconf("SC_CLK_TCK")
    found: dict[int, float] = {}
    for pid in pids:
        try:
            stat = open(f"/proc/{pid}/stat").read()  # noqa: SIM115
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        found[pid] = (int(fields[11]) + int(fields[12])) / ticks
    return found


def cpu_used_since(before: dict[int, float], comm: str) -> float:
    """CPU seconds the ``comm`` processes used since ``before`` (``cpu_by_pid``): those
    alive at both ends by their difference, new ones whole; ones that exited meanwhile
    are lost (a lower bound, never negative)."""
    after = cpu_by_pid(pids_named(comm))
    return sum(max(0.0, used - before.get(pid, 0.0)) for pid, used in after.items())


def pids_named(comm: str) -> list[int]:
    """Processes whose command name is ``comm`` (the PostgreSQL server's backends)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as handle:
                    if handle.read().strip() == comm:
                        found.append(int(entry))
            except OSError:
                continue
    return found


def reduce(outcomes: list[Outcome], rate: float, duration_s: float, start: float
           ) -> PointStats:
    """Decode the answers (after the clock stopped) and compute the figures."""
    latencies: list[float] = []
    stats = PointStats(rate=rate, duration_s=duration_s, scheduled=len(outcomes), sent=0,
                       approved=0, approved_per_s=0.0)
    last_done = start + duration_s
    for o in outcomes:
        if o.sent is not None:
            stats.sent += 1
            stats.late_sends += o.sent - o.scheduled > LATE_SEND_S
        if o.response is None or o.done is None:
            stats.errors[o.error or "no answer"] += 1
            latencies.append(math.inf)
            continue
        last_done = max(last_done, o.done)
        latencies.append((o.done - o.scheduled) * 1e3)
        try:
            rc = decode_unit(o.response).message.opt_text(39) or "none"
        except Exception:  # noqa: BLE001 - an unreadable answer is an error, counted
            stats.errors["unreadable"] += 1
            continue
        if rc == "00":
            stats.approved += 1
        else:
            stats.declines[rc] += 1
    stats.wall_s = last_done - start
    stats.approved_per_s = stats.approved / stats.wall_s if stats.wall_s > 0 else 0.0
    if latencies:
        latencies.sort()

        def pct(q: float) -> float:
            return latencies[min(len(latencies) - 1, math.ceil(q * len(latencies)) - 1)]

        stats.p50_ms, stats.p95_ms, stats.p99_ms = pct(0.50), pct(0.95), pct(0.99)
        stats.max_ms = latencies[-1]
    return stats
