"""One proxy: a loopback listener, its upstream, its toxics and its open connections."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

from loadtest.faultproxy.addresses import join, split_loopback
from loadtest.faultproxy.errors import ApiError, toxic_exists, toxic_not_found
from loadtest.faultproxy.link import CLOSE_GRACE_S, Connection
from loadtest.faultproxy.toxics import STREAMS, Toxic, new_toxic, updated_toxic

log = logging.getLogger(__name__)

UPSTREAM_CONNECT_TIMEOUT_S = 5.0


class Proxy:
    """``name`` listening on ``listen``, forwarding to ``upstream``; ``enabled`` while
    it listens.  Change it through :class:`~loadtest.faultproxy.service.FaultProxy`."""

    def __init__(self, name: str, listen: str, upstream: str, rng: random.Random) -> None:
        self.name = name
        #: ``host:port``; after start the port actually bound (when 0 was asked for).
        self.listen = listen
        self.upstream = upstream
        self.enabled = False
        self._toxics: list[Toxic] = []
        self.connections: set[Connection] = set()
        self._rng = rng
        self._server: asyncio.Server | None = None
        self._generation = 0
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def listen_port(self) -> int:
        return split_loopback(self.listen, "listen", allow_port_zero=True)[1]

    @property
    def toxics(self) -> list[Toxic]:
        """Upstream toxics, then downstream ones, each in the order they were added."""
        return [t for stream in STREAMS for t in self._toxics if t.stream == stream]

    def toxic(self, name: str) -> Toxic:
        found = next((t for t in self._toxics if t.name == name), None)
        if found is None:
            raise toxic_not_found()
        return found

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "listen": self.listen, "upstream": self.upstream,
                "enabled": self.enabled, "toxics": [t.to_json() for t in self.toxics]}

    async def start(self) -> None:
        if self.enabled:
            return
        host, port = split_loopback(self.listen, "listen", allow_port_zero=True)
        try:
            self._server = await asyncio.start_server(self._accept, host, port)
        except OSError as exc:
            raise ApiError(f"listen tcp {self.listen}: {exc.strerror or exc}", 500) from exc
        bound_port = self._server.sockets[0].getsockname()[1]
        self.listen = join(host, bound_port)
        self.enabled = True
        self._generation += 1
        log.info("proxy %s listening on %s -> %s", self.name, self.listen, self.upstream)

    async def stop(self) -> None:
        """Stop listening and close every open connection."""
        if not self.enabled:
            return
        self.enabled = False
        self._generation += 1
        if self._server is not None:
            self._server.close()
            self._server = None
        await asyncio.gather(*(c.close() for c in list(self.connections)))
        await finish(self._handlers)
        log.info("proxy %s stopped", self.name)

    async def add_toxic(self, body: Any) -> Toxic:
        toxic = new_toxic(body)
        if any(t.name == toxic.name for t in self._toxics):
            raise toxic_exists()
        self._toxics.append(toxic)
        for connection in self.connections:
            connection.links[toxic.stream].add(toxic)
        return toxic

    async def update_toxic(self, name: str, body: Any) -> Toxic:
        old = self.toxic(name)
        new = updated_toxic(old, body)
        self._toxics[self._toxics.index(old)] = new
        for connection in list(self.connections):
            await connection.links[new.stream].update(new)
        return new

    async def remove_toxic(self, name: str) -> None:
        toxic = self.toxic(name)
        self._toxics.remove(toxic)
        for connection in list(self.connections):
            await connection.links[toxic.stream].remove(name)

    async def remove_all_toxics(self) -> None:
        for toxic in self.toxics:
            await self.remove_toxic(toxic.name)

    async def _accept(self, client_reader: asyncio.StreamReader,
                      client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._serve(client_reader, client_writer)
        except asyncio.CancelledError:
            client_writer.transport.abort()  # stop() gave up waiting for it
        finally:
            self._handlers.discard(task)

    async def _serve(self, client_reader: asyncio.StreamReader,
                     client_writer: asyncio.StreamWriter) -> None:
        generation = self._generation
        host, port = split_loopback(self.upstream, "upstream", allow_port_zero=False)
        try:
            async with asyncio.timeout(UPSTREAM_CONNECT_TIMEOUT_S):
                upstream = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError) as exc:
            log.warning("proxy %s: upstream %s unreachable (%s); client closed",
                        self.name, self.upstream, exc)
            client_writer.close()
            return
        if generation != self._generation:  # stopped (or restarted) meanwhile
            client_writer.close()
            upstream[1].close()
            return
        connection = Connection((client_reader, client_writer), upstream, self._rng)
        self.connections.add(connection)
        log.debug("proxy %s: connection from %s", self.name, connection.peer)
        try:
            connection.start(self._toxics)
            await connection.finished()
        finally:
            self.connections.discard(connection)
            await connection.close()
            log.debug("proxy %s: connection from %s closed", self.name, connection.peer)


async def finish(tasks: set[asyncio.Task[None]], grace_s: float = CLOSE_GRACE_S) -> None:
    """Wait for connection handlers to end by themselves, then cancel the stragglers."""
    pending = {t for t in tasks if not t.done()}
    if pending:
        _, pending = await asyncio.wait(pending, timeout=grace_s)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=grace_s)
