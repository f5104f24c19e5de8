"""One proxied TCP connection: an upstream link (client -> server) and a downstream
link (server -> client), each ``reader -> toxic stages -> writer``.

As in Toxiproxy, an EOF through either link fully closes that link's destination,
which ends the other link's reading in turn (no half-close); a ``reset_peer`` closes
both sockets with SO_LINGER 0, so both peers get an RST.  Toxics added, updated or
removed while the connection is open act on it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
from collections.abc import Iterable

from loadtest.faultproxy.pipes import PIPES
from loadtest.faultproxy.stream import Chunk, End, Item, Stage
from loadtest.faultproxy.toxics import Toxic

log = logging.getLogger(__name__)

READ_SIZE = 32 * 1024  # Go's io.Copy buffer
#: Bytes read but not yet written (or dropped) before a link's reader waits.
MAX_IN_FLIGHT = 1024 * 1024
#: How long a closing socket may take to flush before it is aborted.
CLOSE_GRACE_S = 2.0


class Link:
    """One direction of one connection."""

    def __init__(self, stream: str, source: asyncio.StreamReader, dest: asyncio.StreamWriter,
                 rng: random.Random, connection: Connection) -> None:
        self.stream = stream
        self.source = source
        self.dest = dest
        self.rng = rng
        self.connection = connection
        self.final: asyncio.Queue[Item] = asyncio.Queue()
        #: Where the reader puts chunks: the first stage's input, or ``final``.
        self.entry = self.final
        self.stages: list[Stage] = []
        #: Set when the writer is done (the destination is closed).
        self.done = asyncio.Event()
        self._in_flight = 0
        self._room = asyncio.Event()
        self._room.set()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, toxics: Iterable[Toxic]) -> None:
        for toxic in toxics:
            self.add(toxic)
        self._tasks = [asyncio.create_task(self._read(), name=f"{self.stream} reader"),
                       asyncio.create_task(self._write(), name=f"{self.stream} writer")]

    def add(self, toxic: Toxic) -> None:
        """A new toxic at the end of the chain."""
        stage = Stage(toxic, self.final, self.rng, self.release)
        if self.stages:
            self.stages[-1].output = stage.input
        else:
            self.entry = stage.input
        self.stages.append(stage)
        self._run(stage)

    async def update(self, toxic: Toxic) -> None:
        """New attributes or toxicity: the stage restarts with its state kept."""
        stage = self._find(toxic.name)
        if stage is None:
            return
        stage.toxic = toxic
        await stage.interrupt()
        if not stage.closed:
            self._run(stage)

    async def remove(self, name: str) -> None:
        """Take a toxic out; what it held and what waits for it go on in order.  A
        ``timeout`` that applied closes the link as it goes (Toxiproxy's cleanup)."""
        stage = self._find(name)
        if stage is None:
            return
        await stage.interrupt()
        if stage.toxic.type == "timeout" and stage.applies:
            stage.put(End.EOF)
        while not stage.closed and not stage.input.empty():
            stage.put(stage.input.get_nowait())
        index = self.stages.index(stage)
        if index == 0:
            self.entry = stage.output
        else:
            self.stages[index - 1].output = stage.output
        del self.stages[index]

    def release(self, byte_count: int) -> None:
        self._in_flight -= byte_count
        if self._in_flight < MAX_IN_FLIGHT:
            self._room.set()

    def cancel(self) -> None:
        for task in self._tasks:
            task.cancel()
        for stage in self.stages:
            stage.cancel()

    def _find(self, name: str) -> Stage | None:
        return next((s for s in self.stages if s.toxic.name == name), None)

    def _run(self, stage: Stage) -> None:
        applies = self.rng.random() < stage.toxic.toxicity
        stage.start(PIPES[stage.toxic.type] if applies else PIPES["noop"], applies)

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self._room.wait()
                data = await self.source.read(READ_SIZE)
                if not data:
                    break
                self._in_flight += len(data)
                if self._in_flight >= MAX_IN_FLIGHT:
                    self._room.clear()
                self.entry.put_nowait(Chunk(data, loop.time()))
        except OSError:
            pass  # reset by the peer, or closed under us: an end like any other
        self.entry.put_nowait(End.EOF)

    async def _write(self) -> None:
        try:
            while True:
                item = await self.final.get()
                if item is End.RESET:
                    self.connection.reset()
                    return
                if item is End.EOF:
                    return
                assert isinstance(item, Chunk)
                self.dest.write(item.data)
                await self.dest.drain()
                self.release(len(item.data))
        except OSError:
            pass
        finally:
            self.dest.close()
            self.done.set()


class Connection:
    """A client connection and its upstream connection, with both links."""

    def __init__(self, client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                 upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                 rng: random.Random) -> None:
        self.peer = str(client[1].get_extra_info("peername"))
        self._writers = (client[1], upstream[1])
        self.links = {"upstream": Link("upstream", client[0], upstream[1], rng, self),
                      "downstream": Link("downstream", upstream[0], client[1], rng, self)}

    def start(self, toxics: Iterable[Toxic]) -> None:
        chosen = list(toxics)
        for stream, link in self.links.items():
            link.start(t for t in chosen if t.stream == stream)

    async def finished(self) -> None:
        """Until both links are done."""
        for link in self.links.values():
            await link.done.wait()

    def reset(self) -> None:
        """TCP RST to both peers (SO_LINGER 0, then close without flushing); both links
        stop, as nothing more can go either way."""
        for writer in self._writers:
            sock = writer.get_extra_info("socket")
            if sock is not None and not writer.transport.is_closing():
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        for link in self.links.values():
            link.cancel()
            link.done.set()

    async def close(self) -> None:
        """Stop both links and close both sockets (the proxy is disabled or deleted)."""
        for link in self.links.values():
            link.cancel()
        for writer in self._writers:
            writer.close()
        for writer in self._writers:
            try:
                async with asyncio.timeout(CLOSE_GRACE_S):
                    await writer.wait_closed()
            except TimeoutError:
                writer.transport.abort()
            except OSError:
                pass
        for link in self.links.values():
            link.done.set()
