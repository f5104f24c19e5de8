"""Run the synchronous host from asyncio through one writer thread (DESIGN.md)."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from switch.host.service import HostService

log = logging.getLogger("bpnt.host")


class AsyncHost:
    """``await handle(unit)``: the host's answer, computed on the single writer thread."""

    def __init__(self, service: HostService) -> None:
        self.service = service
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-writer")

    async def handle(self, unit: bytes) -> bytes | None:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._writer, self.service.process_unit, unit)
        except AssertionError:
            # Our bug (InvariantError is an AssertionError): never answer, never 00.
            log.critical("invariant broken while handling a unit", exc_info=True)
            return None
        except Exception:
            # Unexpected (its transaction rolled back whole): close without an answer, so
            # the terminal times out and reverses; never a guessed response code.
            log.exception("unexpected error while handling a unit; closing the connection")
            return None

    def close(self) -> None:
        self._writer.shutdown(wait=True)
