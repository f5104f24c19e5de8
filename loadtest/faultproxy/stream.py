"""The pieces a link is made of: chunks, the end markers, and one stage per toxic.

A link is ``reader -> stage -> stage -> ... -> writer``, joined by unbounded queues
(the link's reader bounds the bytes in flight).  A stage runs one toxic's pipe in a
task; updating or removing the toxic *interrupts* the stage: the task is cancelled and
what the pipe still held (``held``) goes on at once, as Toxiproxy's toxics do.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from loadtest.faultproxy.toxics import Toxic

log = logging.getLogger(__name__)


class End(enum.Enum):
    """The last item through a link."""

    #: The source closed (or a toxic closed the link): close the destination (FIN).
    EOF = "eof"
    #: ``reset_peer``: close both sockets with SO_LINGER 0 (TCP RST).
    RESET = "reset"


@dataclass
class Chunk:
    data: bytes
    #: Loop time it was read, or left the last latency toxic: latency counts from it.
    at: float


Item = Chunk | End
Pipe = Callable[["Stage"], Awaitable[None]]


class Stage:
    """One toxic on one link: its input queue, where its output goes, its state."""

    def __init__(self, toxic: Toxic, output: asyncio.Queue[Item], rng: random.Random,
                 release: Callable[[int], None]) -> None:
        self.toxic = toxic
        self.input: asyncio.Queue[Item] = asyncio.Queue()
        #: The next stage's input or the link's writer queue (rewired when stages change).
        self.output = output
        self.rng = rng
        #: Per-connection state kept across updates (``limit_data``: bytes sent).
        self.state: dict[str, int] = {}
        #: What the pipe took and still owes downstream, while it waits.
        self.held: list[Item] = []
        #: Whether an End went out: nothing more does.
        self.closed = False
        #: Whether the toxicity draw made the toxic apply (else the stage is a noop).
        self.applies = False
        self._release = release
        self._task: asyncio.Task[None] | None = None

    @property
    def attrs(self) -> dict[str, int]:
        return self.toxic.attributes

    def start(self, pipe: Pipe, applies: bool) -> None:
        self.applies = applies
        self._task = asyncio.create_task(self._run(pipe), name=f"toxic {self.toxic.name}")

    async def _run(self, pipe: Pipe) -> None:
        try:
            await pipe(self)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("toxic %s failed; closing its link", self.toxic.name)
            self.put(End.EOF)

    async def get(self) -> Item:
        return await self.input.get()

    def put(self, item: Item) -> None:
        """Pass ``item`` on; after an End nothing more goes."""
        if self.closed:
            return
        if isinstance(item, End):
            self.closed = True
        self.output.put_nowait(item)

    def drop(self, byte_count: int) -> None:
        """Bytes the toxic swallowed: the link's reader may read that much more."""
        self._release(byte_count)

    async def interrupt(self) -> None:
        """Stop the pipe and pass on what it held (the toxic is updated or removed)."""
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task})
        held, self.held = self.held, []
        for item in held:
            self.put(item)

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
