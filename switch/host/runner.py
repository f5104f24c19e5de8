"""Run the synchronous host from asyncio through one writer thread, with group
commit (DESIGN.md: one writer of money; issue 3).

Requests from every transport queue here.  One collector task takes the first
waiting request, gives it up to ``group_commit_max_delay_ms`` for company when
the queue is empty, then takes what is waiting up to ``group_commit_max_batch``
and runs the batch in two stages (:class:`HostService` ``prepare_batch`` then
``commit_batch``, together ``process_batch``):

* the **preparer** thread decodes, hashes and (``group_commit_precheck``) checks
  MAC, PIN and ARQC, without the writer lock;
* the **writer** thread decides and posts the batch in one database transaction,
  one commit.

Batch N+1 is prepared while batch N holds the writer (its waits for the database
and the commit release the GIL), and at most one prepared batch waits for the
writer, so under load batches still grow by themselves and an idle switch answers
at once.  Batches reach the writer in the order they were taken.  Answers are
delivered only after the batch's commit (``commit_batch`` returns after it), so a
crash can never take back an approval a terminal has seen.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from switch.host.service import HostService, StagedBatch

log = logging.getLogger("bpnt.host")

#: Requests queued at once (a bound, TIGER_STYLE).  The transports bound it first:
#: one request in flight per TCP connection (``max_connections``), ``mqtt_max_inflight``.
MAX_QUEUED = 16_384
#: How long ``close()`` from another thread waits for the batch in flight.
CLOSE_TIMEOUT_S = 60.0

_Item = tuple[bytes, "asyncio.Future[bytes | None]"]


class AsyncHost:
    """``await handle(unit)``: the host's answer, decided and committed on the writer thread."""

    def __init__(self, service: HostService) -> None:
        self.service = service
        self.max_batch = service.settings.group_commit_max_batch
        self.max_delay_s = service.settings.group_commit_max_delay_ms / 1000
        self._preparer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-prepare")
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-writer")
        self._queue: asyncio.Queue[_Item | None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._collector: asyncio.Task[None] | None = None
        self._closing = False
        #: Batches committed and requests in them (the bench and tests read these).
        self.batches = 0
        self.batched_units = 0

    async def handle(self, unit: bytes) -> bytes | None:
        """The response unit, or ``None``: close the connection without an answer."""
        if self._closing:
            return None
        queue = self._start()
        if queue.qsize() >= MAX_QUEUED:
            log.error("host queue full (%d requests): closing without an answer", MAX_QUEUED)
            return None
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        queue.put_nowait((unit, future))
        return await future

    def _start(self) -> asyncio.Queue[_Item | None]:
        if self._queue is None:
            self._loop = asyncio.get_running_loop()
            self._queue = asyncio.Queue()
            self._collector = self._loop.create_task(self._collect(self._queue))
        return self._queue

    async def _collect(self, queue: asyncio.Queue[_Item | None]) -> None:
        """Take batches off the queue until the stop marker (``None``)."""
        loop = asyncio.get_running_loop()
        committing: asyncio.Task[None] | None = None
        while True:
            first = await queue.get()
            if first is None:
                break
            if queue.empty() and self.max_delay_s > 0:
                await asyncio.sleep(self.max_delay_s)  # the group-commit window
            batch = [first]
            stop = False
            while len(batch) < self.max_batch and not queue.empty():
                item = queue.get_nowait()
                if item is None:
                    stop = True
                    break
                batch.append(item)
            staged = await self._prepare_batch(loop, batch)
            if committing is not None:
                await committing  # one batch in the writer at a time, in order
            committing = loop.create_task(self._commit_batch(loop, batch, staged))
            if stop:
                break
        if committing is not None:
            await committing
        while not queue.empty():  # arrived after the stop marker: never decided
            item = queue.get_nowait()
            if item is not None and not item[1].done():
                item[1].set_result(None)

    async def _prepare_batch(self, loop: asyncio.AbstractEventLoop,
                             batch: list[_Item]) -> StagedBatch | None:
        units = [unit for unit, _ in batch]
        try:
            return await loop.run_in_executor(self._preparer, self.service.prepare_batch, units)
        except Exception:
            log.exception("unexpected error preparing a batch of %d units; closing their "
                          "connections", len(units))
            return None

    async def _commit_batch(self, loop: asyncio.AbstractEventLoop, batch: list[_Item],
                            staged: StagedBatch | None) -> None:
        answers: list[bytes | None] = [None] * len(batch)
        if staged is not None:
            try:
                answers = await loop.run_in_executor(
                    self._writer, self.service.commit_batch, staged)
            except AssertionError:
                # Our bug (InvariantError is an AssertionError): the batch rolled back
                # whole; never answer, never 00.  The terminals time out and reverse.
                log.critical("invariant broken in a batch of %d units", len(batch),
                             exc_info=True)
            except Exception:
                log.exception("unexpected error in a batch of %d units; closing their "
                              "connections", len(batch))
        self.batches += 1
        self.batched_units += len(batch)
        for (_, future), answer in zip(batch, answers, strict=True):
            if not future.done():  # the caller may have been cancelled (its connection went)
                future.set_result(answer)

    async def aclose(self) -> None:
        """Finish the batch in flight (its answers are delivered), refuse the rest."""
        self._closing = True
        if self._queue is not None and self._collector is not None:
            self._queue.put_nowait(None)
            await self._collector
        self._preparer.shutdown(wait=True)
        self._writer.shutdown(wait=True)
        if self.batches:
            log.info("group commit: %d requests in %d batches (%.1f per batch)",
                     self.batched_units, self.batches, self.batched_units / self.batches)

    def close(self) -> None:
        """From a thread other than the event loop's (tests, embedders): ``aclose()`` when
        the loop still runs, else just stop the writer thread.  On the loop: ``aclose()``."""
        loop = self._loop
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        assert not on_loop, "await aclose() on the event loop"
        if loop is not None and loop.is_running():
            asyncio.run_coroutine_threadsafe(self.aclose(), loop).result(CLOSE_TIMEOUT_S)
            return
        self._closing = True
        self._preparer.shutdown(wait=True)
        self._writer.shutdown(wait=True)
