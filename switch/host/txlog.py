"""Log lines about a transaction's decisions, written once it has committed.

A batch's decisions ("purchase ... rc=00") are only true once its transaction
commits: a batch rolled back for one bad unit is decided again, and would have
logged its approvals twice.  Lines given to :func:`log_after_commit` are kept in
the session and written after the commit (the writer lock already released, so
other switch processes are not kept waiting while this one formats log lines),
or dropped on a rollback.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

_LINES = "bpnt.host.txlog"


def log_after_commit(session: Session, logger: logging.Logger, level: int, msg: str,
                     *args: Any) -> None:
    """``logger.log(level, msg, *args)`` once ``session``'s transaction commits."""
    if logger.isEnabledFor(level):
        session.info.setdefault(_LINES, []).append((logger, level, msg, args))


@event.listens_for(Session, "after_commit")
def _write(session: Session) -> None:
    for logger, level, msg, args in session.info.pop(_LINES, ()):
        logger.log(level, msg, *args)


@event.listens_for(Session, "after_rollback")
def _drop(session: Session) -> None:
    session.info.pop(_LINES, None)
