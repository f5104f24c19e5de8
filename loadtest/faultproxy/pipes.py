"""What each toxic does to one link's chunks: Toxiproxy's ``toxics/*.go`` in asyncio.

A pipe takes items from its stage and puts on what passes; it returns after putting an
End (any End it takes goes straight on, except the EOF ``slow_close`` delays).  Before
each wait it leaves what it still owes in ``stage.held``, which an interrupt flushes.
"""

from __future__ import annotations

import asyncio
import random

from loadtest.faultproxy.stream import Chunk, End, Pipe, Stage


async def noop(stage: Stage) -> None:
    while True:
        item = await stage.get()
        stage.put(item)
        if isinstance(item, End):
            return


async def latency(stage: Stage) -> None:
    """Each chunk ``latency`` ms +/- ``jitter`` ms after it was read (chunks overlap:
    a later chunk waits only for its own delay)."""
    loop = asyncio.get_running_loop()
    while True:
        item = await stage.get()
        if isinstance(item, End):
            stage.put(item)
            return
        delay_ms = stage.attrs["latency"]
        jitter_ms = stage.attrs["jitter"]
        if jitter_ms > 0:
            delay_ms += stage.rng.randrange(-jitter_ms, jitter_ms)
        wait_s = item.at + delay_ms / 1000 - loop.time()
        if wait_s > 0:
            stage.held = [item]
            await asyncio.sleep(wait_s)
            stage.held = []
        stage.put(Chunk(item.data, loop.time()))


async def bandwidth(stage: Stage) -> None:
    """At most ``rate`` KB/s (bytes per ms); a chunk bigger than 100 ms' worth goes in
    100 ms pieces.  Rate 0 lets nothing through until the toxic changes (as Toxiproxy)."""
    loop = asyncio.get_running_loop()
    debt_s = 0.0  # what the bytes so far should have taken, less the time slept for them
    while True:
        item = await stage.get()
        if isinstance(item, End):
            stage.put(item)
            return
        rate = stage.attrs["rate"]
        if rate <= 0:
            stage.held = [item]
            await loop.create_future()  # until interrupted
        debt_s += len(item.data) / (rate * 1000)
        piece = rate * 100
        data = item.data
        while len(data) > piece:
            stage.held = [Chunk(data, item.at)]
            await asyncio.sleep(0.1)
            stage.put(Chunk(data[:piece], item.at))
            data = data[piece:]
            debt_s -= 0.1
        stage.held = [Chunk(data, item.at)]
        started = loop.time()
        await asyncio.sleep(max(debt_s, 0.0))
        debt_s -= loop.time() - started  # timers overshoot: the next chunk makes up for it
        stage.held = []
        stage.put(Chunk(data, item.at))


async def slow_close(stage: Stage) -> None:
    """The EOF goes on ``delay`` ms after it came."""
    while True:
        item = await stage.get()
        if item is End.EOF:
            stage.held = [item]
            await asyncio.sleep(stage.attrs["delay"] / 1000)
            stage.held = []
        stage.put(item)
        if isinstance(item, End):
            return


async def timeout(stage: Stage) -> None:
    """Drop everything; close after ``timeout`` ms, or never if 0.  (Removing the toxic
    closes the link too: :meth:`~loadtest.faultproxy.link.Link.remove`.)"""
    timeout_ms = stage.attrs["timeout"]
    if timeout_ms <= 0:
        await _drop_until_end(stage)
        return
    try:
        async with asyncio.timeout(timeout_ms / 1000):
            await _drop_until_end(stage)
    except TimeoutError:
        stage.put(End.EOF)


async def _drop_until_end(stage: Stage) -> None:
    while True:
        item = await stage.get()
        if isinstance(item, End):
            stage.put(item)
            return
        stage.drop(len(item.data))


async def reset_peer(stage: Stage) -> None:
    """``timeout`` ms after the first data (which is dropped), reset the connection."""
    item = await stage.get()
    if item is End.RESET:
        stage.put(item)
        return
    if isinstance(item, Chunk):
        stage.drop(len(item.data))
    else:
        stage.held = [item]  # an EOF still goes on if the toxic goes before the reset
    await asyncio.sleep(stage.attrs["timeout"] / 1000)
    stage.held = []
    stage.put(End.RESET)


async def slicer(stage: Stage) -> None:
    """Each chunk cut into slices of about ``average_size`` +/- ``size_variation`` bytes,
    ``delay`` µs after each slice."""
    while True:
        item = await stage.get()
        if isinstance(item, End):
            stage.put(item)
            return
        data = item.data
        for start, end in slice_bounds(0, len(data), stage.attrs["average_size"],
                                       stage.attrs["size_variation"], stage.rng):
            stage.put(Chunk(data[start:end], item.at))
            stage.held = [Chunk(data[end:], item.at)] if end < len(data) else []
            await asyncio.sleep(stage.attrs["delay"] / 1_000_000)
        stage.held = []


def slice_bounds(start: int, end: int, average: int, variation: int,
                 rng: random.Random) -> list[tuple[int, int]]:
    """Toxiproxy's slicer split: halve (+/- variation) until a piece is at most
    average + variation.  Needs ``0 <= variation < average`` (toxics.py checks).

    >>> slice_bounds(0, 100, 25, 0, random.Random(1))
    [(0, 25), (25, 50), (50, 75), (75, 100)]
    """
    if (end - start) - average <= variation:
        return [(start, end)]
    mid = start + (end - start) // 2
    if variation > 0:
        mid += rng.randrange(-variation, variation)
    return (slice_bounds(start, mid, average, variation, rng)
            + slice_bounds(mid, end, average, variation, rng))


async def limit_data(stage: Stage) -> None:
    """Pass ``bytes`` bytes in all (over the connection's life), then close."""
    limit = stage.attrs["bytes"]
    while True:
        item = await stage.get()
        if isinstance(item, End):
            stage.put(item)
            return
        sent = stage.state.get("sent", 0)
        room = max(limit - sent, 0)
        data = item.data
        if room < len(data):
            stage.drop(len(data) - room)
            data = data[:room]
        if data:
            stage.put(Chunk(data, item.at))
            sent += len(data)
            stage.state["sent"] = sent
        if limit - sent <= 0:
            stage.put(End.EOF)
            return


PIPES: dict[str, Pipe] = {
    "noop": noop, "latency": latency, "bandwidth": bandwidth, "slow_close": slow_close,
    "timeout": timeout, "reset_peer": reset_peer, "slicer": slicer, "limit_data": limit_data,
}
