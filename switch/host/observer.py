"""What the host tells whoever watches it (the server's metrics, issue 16), per batch.

The host knows nothing of Prometheus: :class:`switch.metrics.SwitchMetrics` is one
:class:`HostObserver`, handed in by ``bpnt-switch serve``; without one,
:data:`NO_OBSERVER` does nothing.  Called on the writer thread, once per batch (and
once per database error), never per request.
"""

from __future__ import annotations

from typing import Literal, Protocol

#: ``unavailable``: the database failed before the commit (the batch answered 91);
#: ``commit_failed``: the commit itself failed (no answers); ``race``: a lost race with
#: another writer (decided again); ``other``: a write failed with no request to blame
#: (decided again one by one).
DbErrorKind = Literal["unavailable", "commit_failed", "race", "other"]
DB_ERROR_KINDS: tuple[DbErrorKind, ...] = ("unavailable", "commit_failed", "race", "other")


class HostObserver(Protocol):
    def batch_committed(self, requests: int, seconds: float) -> None:
        """A batch of ``requests`` units went through ``commit_batch`` in ``seconds``."""

    def database_error(self, kind: DbErrorKind) -> None:
        """The database failed a batch (see :data:`DbErrorKind`)."""


class _NoObserver:
    def batch_committed(self, requests: int, seconds: float) -> None:
        pass

    def database_error(self, kind: DbErrorKind) -> None:
        pass


NO_OBSERVER: HostObserver = _NoObserver()
