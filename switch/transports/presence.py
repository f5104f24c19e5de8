"""Terminal presence (HOST_SPEC §1: retained ``online`` and a Last Will ``offline``).

Presence is not money: it is written in its own short transaction on a small
executor of its own, never on the ledger-writer thread, without the host's writer
lock (on PostgreSQL it waits for no batch; on SQLite every write is the file's one
writer anyway), and lives in the database (DESIGN.md: stateless switch instances)
so ``bpnt-switch terminals`` can list it.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from switch.clock import Clock, SystemClock
from switch.db.engine import Database
from switch.db.tables import TerminalPresence

log = logging.getLogger("bpnt.presence")

STATUSES = ("online", "offline")
MAX_TID_CHARS = 8


@dataclass(frozen=True)
class PresenceRow:
    tid: str
    status: str
    last_seen_at: datetime
    source: str


def record_presence(db: Database, tid: str, status: str, source: str, at: datetime) -> None:
    """Upsert one terminal's presence (one short transaction)."""
    assert status in STATUSES, status
    with db.transaction(exclusive=False) as session:
        row = session.get(TerminalPresence, tid)
        if row is None:
            session.add(TerminalPresence(tid=tid, status=status, last_seen_at=at, source=source))
        else:
            row.status, row.last_seen_at, row.source = status, at, source


def list_presence(db: Database) -> list[PresenceRow]:
    with db.transaction(exclusive=False) as session:
        rows = session.scalars(select(TerminalPresence).order_by(TerminalPresence.tid)).all()
        return [PresenceRow(r.tid, r.status, r.last_seen_at, r.source) for r in rows]


class PresenceStore:
    """``await update(tid, payload)`` from a transport; bad payloads are ignored."""

    def __init__(self, db: Database, clock: Clock | None = None) -> None:
        self._db = db
        self._clock = clock or SystemClock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="presence")
        #: Each terminal's last status seen by this process, and how many have each
        #: (ints, so the metrics can read them from their own thread).
        self._status_by_tid: dict[str, str] = {}
        self._terminals = dict.fromkeys(STATUSES, 0)

    def terminals(self, status: str) -> int:
        """Terminals whose last presence seen here is ``status``."""
        return self._terminals.get(status, 0)

    async def update(self, tid: str, payload: bytes, source: str = "mqtt") -> bool:
        status = payload.decode("ascii", "replace").strip().lower()
        if status not in STATUSES or not 0 < len(tid) <= MAX_TID_CHARS or not tid.isprintable():
            log.info("ignoring presence %r for %r", payload[:16], tid[:16])
            return False
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, record_presence, self._db, tid, status,
                                   source, self._clock.now())
        self._seen(tid, status)
        log.info("terminal %s is %s", tid, status)
        return True

    def _seen(self, tid: str, status: str) -> None:
        before = self._status_by_tid.get(tid)
        if before == status:
            return
        if before is not None:
            self._terminals[before] -= 1
        self._status_by_tid[tid] = status
        self._terminals[status] += 1

    def close(self) -> None:
        self._executor.shutdown(wait=True)
