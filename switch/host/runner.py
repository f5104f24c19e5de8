"""Run the synchronous host from asyncio through one writer thread, with group
commit (DESIGN.md: one writer of money; issue 3).

Requests from every transport queue here (a thread-safe queue).  Two threads
run the batches, in two stages (:class:`HostService` ``prepare_batch`` then
``commit_batch``, together ``process_batch``):

* the **preparer** takes the first waiting request, gives it up to
  ``group_commit_max_delay_ms`` for company when the queue is empty, takes what is
  waiting up to ``group_commit_max_batch``, and decodes, hashes and
  (``group_commit_precheck``) checks MAC, PIN and ARQC, without the writer lock;
* the **writer** decides and posts each prepared batch in one database
  transaction, one commit, and hands the answers to the event loop.

Batch N+1 is prepared while batch N holds the writer (its waits for the database
and the commit release the GIL), and at most one prepared batch waits for the
writer: the preparer takes a batch only when that place is free, so under load
batches still grow by themselves and an idle switch answers at once.  The writer
goes from one batch to the next without a hop through the event loop (at 2,000
purchases/s the writer was found idle a third of the time; taking the hop out
changed no throughput figure measurably, the GIL being the limit of a process).
Batches reach the writer in the order they were taken.  Answers are delivered
only after the batch's commit (``commit_batch`` returns after it), so a crash can
never take back an approval a terminal has seen.  A batch whose commit itself fails
gets ``None`` for each request (it may have landed, HOST_SPEC §5): every transport
takes ``None`` as "no answer" (TCP closes the connection, MQTT and serial send
nothing), so the terminal times out and reverses.

A broken invariant (an ``InvariantError``, or any ``AssertionError``: our bug) in
either stage is never answered: that batch and every later request are closed
without an answer, :attr:`AsyncHost.failure` holds the error and :meth:`broken`
returns, so the server stops the process with a non-zero exit (DESIGN.md: crash
loudly; never answer after it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Sequence

from switch.host.service import HostService, StagedBatch

log = logging.getLogger("bpnt.host")

#: Requests queued at once (a bound, TIGER_STYLE).  The transports bound it first:
#: one request in flight per TCP connection (``max_connections``), ``mqtt_max_inflight``.
MAX_QUEUED = 16_384
#: How long ``close()`` from another thread waits for the batch in flight.
CLOSE_TIMEOUT_S = 60.0

_Item = tuple[bytes, "asyncio.Future[bytes | None]"]
_Prepared = tuple[list[_Item], StagedBatch | None]


class AsyncHost:
    """``await handle(unit)``: the host's answer, decided and committed on the writer thread."""

    def __init__(self, service: HostService) -> None:
        self.service = service
        self.max_batch = service.settings.group_commit_max_batch
        self.max_delay_s = service.settings.group_commit_max_delay_ms / 1000
        self._inbox: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._prepared: queue.SimpleQueue[_Prepared | None] = queue.SimpleQueue()
        #: The one place for a prepared batch waiting for the writer.
        self._waiting_place = threading.Semaphore(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._threads: list[threading.Thread] = []
        self._stopped: asyncio.Future[None] | None = None
        self._closing = False
        #: The invariant that broke (the host answers nothing once it is set).
        self.failure: BaseException | None = None
        self._broken: asyncio.Future[None] | None = None
        #: Batches committed and requests in them (the bench and tests read these).
        self.batches = 0
        self.batched_units = 0

    async def handle(self, unit: bytes) -> bytes | None:
        """The response unit, or ``None``: close the connection without an answer."""
        if self._closing:
            return None
        self._start()
        if self._inbox.qsize() >= MAX_QUEUED:
            log.error("host queue full (%d requests): closing without an answer", MAX_QUEUED)
            return None
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._inbox.put((unit, future))
        return await future

    def queued(self) -> int:
        """Requests waiting for the preparer."""
        return self._inbox.qsize()

    def _start(self) -> None:
        if self._threads:
            return
        self._loop = asyncio.get_running_loop()
        self._stopped = self._loop.create_future()
        self._broken = self._loop.create_future()
        self._threads = [
            threading.Thread(target=self._prepare_loop, name="ledger-prepare", daemon=True),
            threading.Thread(target=self._write_loop, name="ledger-writer", daemon=True)]
        for thread in self._threads:
            thread.start()

    # -- the preparer thread -------------------------------------------------------------

    def _prepare_loop(self) -> None:
        """Take batches off the inbox until the stop marker (``None``), then pass it on."""
        while True:
            self._waiting_place.acquire()  # released when the writer takes the last one
            first = self._inbox.get()
            if first is None:
                break
            if self.max_delay_s > 0 and self._inbox.empty():
                time.sleep(self.max_delay_s)  # the group-commit window
            batch = [first]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    item = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._prepared.put((batch, self._prepare_batch(batch)))
            if stop:
                break
        self._prepared.put(None)

    def _prepare_batch(self, batch: Sequence[_Item]) -> StagedBatch | None:
        units = [unit for unit, _ in batch]
        try:
            return self.service.prepare_batch(units)
        except AssertionError as exc:
            self._break(exc, len(units))
            return None
        except Exception:
            log.exception("unexpected error preparing a batch of %d units; closing their "
                          "connections", len(units))
            return None

    # -- the writer thread ---------------------------------------------------------------

    def _write_loop(self) -> None:
        """Commit prepared batches in order until the stop marker."""
        loop = self._loop
        assert loop is not None
        try:
            while (taken := self._prepared.get()) is not None:
                self._waiting_place.release()
                batch, staged = taken
                answers = self._commit_batch(batch, staged)
                self.batches += 1
                self.batched_units += len(batch)
                self._deliver(loop, batch, answers)
        finally:
            self._deliver_stop(loop)

    def _commit_batch(self, batch: Sequence[_Item],
                      staged: StagedBatch | None) -> list[bytes | None]:
        if staged is None or self.failure is not None:
            return [None] * len(batch)
        try:
            return self.service.commit_batch(staged)
        except AssertionError as exc:
            # Our bug (InvariantError is an AssertionError): the batch rolled back
            # whole; never answer, never 00.  The terminals time out and reverse.
            self._break(exc, len(batch))
        except Exception:
            log.exception("unexpected error in a batch of %d units; closing their "
                          "connections", len(batch))
        return [None] * len(batch)

    def _break(self, exc: BaseException, units: int) -> None:
        """Stop answering for good, and tell the server (see the module)."""
        log.critical("invariant broken in a batch of %d units: the switch stops and "
                     "answers nothing more", units, exc_info=exc)
        self.failure = exc
        self._closing = True
        loop, broken = self._loop, self._broken

        def tell() -> None:
            if broken is not None and not broken.done():
                broken.set_result(None)

        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(tell)

    async def broken(self) -> BaseException:
        """Returns once an invariant has broken (see the module): the error."""
        self._start()
        assert self._broken is not None
        await self._broken
        assert self.failure is not None
        return self.failure

    @staticmethod
    def _deliver(loop: asyncio.AbstractEventLoop, batch: Sequence[_Item],
                 answers: Sequence[bytes | None]) -> None:
        def deliver() -> None:
            for (_, future), answer in zip(batch, answers, strict=True):
                if not future.done():  # the caller may have been cancelled (connection went)
                    future.set_result(answer)

        try:
            loop.call_soon_threadsafe(deliver)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            log.warning("event loop closed: %d answers not delivered", len(batch))

    def _deliver_stop(self, loop: asyncio.AbstractEventLoop) -> None:
        stopped = self._stopped

        def done() -> None:
            if stopped is not None and not stopped.done():
                stopped.set_result(None)

        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            loop.call_soon_threadsafe(done)

    # -- closing -------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Finish the batches taken (their answers are delivered), refuse the rest."""
        self._closing = True
        if self._threads:
            self._inbox.put(None)
            assert self._stopped is not None
            await self._stopped  # after every delivery the writer scheduled before it
            self._join()
            self._refuse_late()
        if self.batches:
            log.info("group commit: %d requests in %d batches (%.1f per batch)",
                     self.batched_units, self.batches, self.batched_units / self.batches)

    def _join(self) -> None:
        for thread in self._threads:
            thread.join(CLOSE_TIMEOUT_S)

    def _refuse_late(self) -> None:
        """Requests that arrived after the stop marker: never decided, closed."""
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return
            if item is not None and not item[1].done():
                item[1].set_result(None)

    def close(self) -> None:
        """From a thread other than the event loop's (tests, embedders): ``aclose()`` when
        the loop still runs, else just stop the threads.  On the loop: ``aclose()``."""
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
        if self._threads:
            self._inbox.put(None)
            self._join()
