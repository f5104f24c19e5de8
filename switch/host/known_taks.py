"""The TAK each terminal was last answered under, kept in this process's memory so a
91 can be signed while the database cannot be read (HOST_SPEC §5, §6).

The database holds the keys (wrapped, :mod:`switch.host.store`); this is only what
this process saw them to be at its last commit for the terminal: the TAK a
committed answer was signed with, or the one a committed logon handed out.  It may
go stale (a logon through another switch process), which is safe: a 91 is signed
with it only when the request's own MAC verifies under it
(:func:`switch.core.decide.decide_unavailable`); otherwise the 91 goes unsigned and
the terminal keeps its reversal pending.  Bounded; used from the writer thread only.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from switch.core.effects import Decision, KeysChange
from switch.core.request import Request
from switch.protocol.routing import TxnType

#: Terminals remembered (least recently answered forgotten first).
KNOWN_TAKS_CAPACITY = 65_536


class KnownTaks:
    """TID → clear TAK (never logged: the repr shows only how many)."""

    def __init__(self, capacity: int = KNOWN_TAKS_CAPACITY) -> None:
        assert capacity > 0, "a cache of no terminals"
        self.capacity = capacity
        self._taks: OrderedDict[str, bytes] = OrderedDict()

    def tak(self, tid: str) -> bytes | None:
        return self._taks.get(tid)

    def remember_committed(self, requests: Sequence[Request],
                           decisions: Sequence[Decision]) -> None:
        """After a commit: each answer's signing key, and each logon's new TAK, in the
        batch's order (a logon's keys sign the requests after it)."""
        for request, decision in zip(requests, decisions, strict=True):
            if decision.sign_with is not None:
                self._put(request.message.text(41), decision.sign_with)
            if request.txn is TxnType.LOGON:
                for effect in decision.effects:
                    if isinstance(effect, KeysChange):
                        self._put(effect.tid, effect.tak)

    def _put(self, tid: str, tak: bytes) -> None:
        self._taks[tid] = tak
        self._taks.move_to_end(tid)
        if len(self._taks) > self.capacity:
            self._taks.popitem(last=False)

    def __len__(self) -> int:
        return len(self._taks)

    def __repr__(self) -> str:
        return f"KnownTaks(<{len(self._taks)} terminals, redacted>)"
