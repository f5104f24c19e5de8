"""The dashboard's server-sent events: one ``snapshot`` event per poll, scoped.

The stream begins with ``retry`` (the browser's EventSource reconnects after that
many ms) and the current snapshot, then one event for every new poll and a comment
line (``: heartbeat``) when ``heartbeat_s`` passes without one, so proxies and the
browser see a live connection.  It ends when the poller stops (the app's shutdown)
or after ``max_stream_s`` (the browser reconnects at once): a stream never holds a
server's graceful shutdown for longer than that.  A client that goes away ends it
too (the web framework cancels the generator).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from console.live.poller import Poller
from console.live.window import Scope

HEARTBEAT_S = 15.0
MAX_STREAM_S = 300.0
RETRY_MS = 2000


def event(name: str, data: dict[str, Any], event_id: int) -> str:
    """One SSE event (the JSON has no newline, so one ``data:`` line)."""
    return f"id: {event_id}\nevent: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def snapshots(poller: Poller, scope: Scope, *, heartbeat_s: float = HEARTBEAT_S,
                    max_stream_s: float = MAX_STREAM_S) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_stream_s
    yield f"retry: {RETRY_MS}\n\n"
    seen = poller.version
    yield event("snapshot", poller.snapshot(scope), seen)
    while poller.running:
        left = deadline - loop.time()
        if left <= 0:
            break
        version = await poller.wait_for_version(seen, min(heartbeat_s, left))
        if not poller.running:
            break
        if version == seen:
            yield ": heartbeat\n\n"
            continue
        seen = version
        yield event("snapshot", poller.snapshot(scope), seen)
