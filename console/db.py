"""Database sessions for pages: reads that never take the writer lock, and writes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session
from starlette.requests import Request

from switch.db.engine import Database


def database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


@contextmanager
def reading(request: Request) -> Iterator[Session]:
    """An ORM session on a read-only transaction (no writer lock: the switch's writers
    never wait for a page), timed into the console's query metric."""
    started = time.perf_counter()
    with database(request).read() as connection, Session(bind=connection) as session:
        try:
            yield session
        finally:
            request.app.state.metrics.observe_query(time.perf_counter() - started)


@contextmanager
def writing(request: Request) -> Iterator[Session]:
    """One write transaction (commit on success, nothing on an exception)."""
    started = time.perf_counter()
    with database(request).transaction() as session:
        try:
            yield session
        finally:
            request.app.state.metrics.observe_query(time.perf_counter() - started)
