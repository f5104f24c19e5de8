"""TCP transport: 2-byte length + unit (HOST_SPEC §1).  Reads units, calls the
host, writes units.  Nothing else (DESIGN.md).

Limits (TIGER_STYLE): frame size, connections in total, an idle timeout and a
shorter partial-frame timeout (a slow-loris client is cut off), one request in
flight per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable

from switch.protocol.errors import FramingError
from switch.protocol.framing import TcpFramer, frame_tcp
from switch.settings import Settings

log = logging.getLogger("bpnt.tcp")

UnitHandler = Callable[[bytes], Awaitable[bytes | None]]
READ_CHUNK_BYTES = 4096


class TcpTransport:
    def __init__(self, handler: UnitHandler, settings: Settings) -> None:
        self._handler = handler
        self._settings = settings
        self._connections = 0
        self._per_address: Counter[str] = Counter()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    @property
    def open_connections(self) -> int:
        """Connections being served now (the metrics read it at scrape time)."""
        return self._connections

    async def start(self) -> tuple[str, int]:
        """Listen; returns the bound (host, port), useful with port 0 in tests."""
        self._server = await asyncio.start_server(
            self._serve_connection, self._settings.host, self._settings.port
        )
        host, port = self._server.sockets[0].getsockname()[:2]
        log.info("listening on %s:%d", host, port)
        return host, port

    async def serve_forever(self) -> None:
        assert self._server is not None, "start() first"
        async with self._server:
            await self._server.serve_forever()

    async def close(self) -> None:
        """Stop listening and hang up on every client (a request in flight finishes first:
        its answer is computed on the writer thread either way)."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = writer.get_extra_info("peername")
        address = str(peer[0]) if peer else "?"
        if self._connections >= self._settings.max_connections:
            log.warning("connection limit %d reached: refusing %s",
                        self._settings.max_connections, address)
            writer.close()
            return
        if self._per_address[address] >= self._settings.max_connections_per_address:
            log.warning("per-address limit %d reached: refusing %s",
                        self._settings.max_connections_per_address, address)
            writer.close()
            return
        self._connections += 1
        self._per_address[address] += 1
        self._writers.add(writer)
        try:
            await self._read_loop(reader, writer)
        except (ConnectionError, TimeoutError, FramingError) as exc:
            log.info("connection from %s closed: %s", address, type(exc).__name__)
        finally:
            self._writers.discard(writer)
            self._connections -= 1
            self._per_address[address] -= 1
            if not self._per_address[address]:
                del self._per_address[address]
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _read_loop(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Idle connections get ``idle_timeout_s``; a frame, once started, must be complete
        within ``partial_frame_timeout_s`` however slowly its bytes trickle (slow-loris)."""
        framer = TcpFramer(max_unit_bytes=self._settings.max_frame_bytes)
        loop = asyncio.get_running_loop()
        frame_deadline: float | None = None
        while True:
            if framer.pending_bytes and frame_deadline is None:
                frame_deadline = loop.time() + self._settings.partial_frame_timeout_s
            if frame_deadline is None:
                timeout_s = self._settings.idle_timeout_s
            else:
                timeout_s = max(0.0, frame_deadline - loop.time())
            # asyncio.timeout, not wait_for: no task per read (wait_for wraps the read in
            # a new task each time, a cost on every request of every connection)
            async with asyncio.timeout(timeout_s):
                data = await reader.read(READ_CHUNK_BYTES)
            if not data:
                return
            framer.receive_data(data)
            while (unit := framer.next_unit()) is not None:
                frame_deadline = None  # the next frame, if started, gets its own deadline
                response = await self._handler(unit)
                if response is None:
                    return
                writer.write(frame_tcp(response))
                await writer.drain()
