"""The daily reports' own reads (SQLAlchemy Core, one read-only snapshot:
:func:`~switch.reports.rules_queries.snapshot`): what the reconciliation and rules
reports do not already read, i.e. the regions of cards and records, the period's
allocations and who shopped in it.  The day's purchase requests come from
:class:`~switch.reports.rules_queries.RulesReader`, in the same snapshot.

**Region** of a card: its KPM's NIK, province (2 digits) and regency (4 digits).  A
record without a card (an unknown card, say) takes its e-warong's ``region``.

**This period** is the month of the day (``YYYY-MM``, as ``bpnt-switch allocate
--period``) from its first day 00:00 WIB to the end of the day reported.  A KPM was
allocated in it when a transfer ``alloc:<period>:<kpm id>`` exists; it has shopped
when a card of its made a standing purchase (approved, not voided, not reversed) in
that span.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any, cast

from sqlalchemy import Connection, Table, or_, select

from switch.clock import WIB
from switch.db.tables import Account, Ewarong, EwarongZone, Kpm
from switch.reports.recon_model import Window
from switch.reports.recon_queries import RECORDS, TRANSFERS
from switch.reports.rules_queries import CARDS, RulesReader

__all__ = ["DailyReader", "KpmLine", "period_of", "period_start"]

_KPM = cast(Table, Kpm.__table__)
_ACCOUNTS = cast(Table, Account.__table__)
_ZONES = cast(Table, EwarongZone.__table__)
_EWARONGS = cast(Table, Ewarong.__table__)
_CHUNK = 500


def period_of(day: date) -> str:
    """The benefit period (month) of ``day``: ``2026-11``."""
    return f"{day.year:04d}-{day.month:02d}"


def period_start(day: date) -> datetime:
    """00:00 WIB of the first day of ``day``'s month."""
    return datetime.combine(day.replace(day=1), time(0), WIB)


@dataclass(frozen=True)
class KpmLine:
    kpm_id: int
    nik: str
    zone: str
    balance_sen: int


class DailyReader(RulesReader):
    """The rules reports' scope and reads, and the daily reports' own."""

    def __init__(self, connection: Connection, window: Window, mid: str | None) -> None:
        super().__init__(connection, window, mid)

    def _chunked(self, ids: Sequence[int], statement: Any, column: Any) -> list[Any]:
        wanted = sorted(set(ids))
        out: list[Any] = []
        for at in range(0, len(wanted), _CHUNK):
            out += self.rows(statement.where(column.in_(wanted[at:at + _CHUNK])))
        return out

    def card_regions(self, card_ids: Sequence[int]) -> dict[int, str]:
        """Card id → the first 4 digits of its KPM's NIK (province and regency)."""
        statement = (select(CARDS.c.id, _KPM.c.nik)
                     .join(_KPM, _KPM.c.id == CARDS.c.kpm_id))
        return {int(r.id): str(r.nik)[:4] for r in
                self._chunked(card_ids, statement, CARDS.c.id)}

    def record_cards(self, record_ids: Sequence[int]) -> dict[int, int]:
        """Record id → its card (records without one are left out)."""
        statement = select(RECORDS.c.id, RECORDS.c.card_id).where(
            RECORDS.c.card_id.is_not(None))
        return {int(r.id): int(r.card_id) for r in
                self._chunked(record_ids, statement, RECORDS.c.id)}

    def ewarong_names(self) -> dict[int, str]:
        """E-warong id → name, of those in scope."""
        return {int(r.id): str(r.name) for r in self.rows(
            select(_EWARONGS.c.id, _EWARONGS.c.name)) if int(r.id) in self.mids}

    def ewarong_zones(self, ewarong_id: int) -> list[str]:
        return [str(z) for (z,) in self.rows(select(_ZONES.c.zone_prefix)
                                             .where(_ZONES.c.ewarong_id == ewarong_id)
                                             .order_by(_ZONES.c.zone_prefix))]

    def allocated(self, period: str, zone_prefixes: Sequence[str] | None) -> list[KpmLine]:
        """The KPM allocated in ``period`` (of the zones starting with one of
        ``zone_prefixes``, if given), by KPM id, with their wallet balance now."""
        t, k, a = TRANSFERS, _KPM, _ACCOUNTS
        statement = (select(k.c.id, k.c.nik, k.c.zone, a.c.balance_sen)
                     .join(t, t.c.credit_account_id == k.c.wallet_account_id)
                     .join(a, a.c.id == k.c.wallet_account_id)
                     .where(t.c.kind == "allocation",
                            t.c.idempotency_key.startswith(f"alloc:{period}:",
                                                           autoescape=True))
                     .order_by(k.c.id))
        if zone_prefixes is not None:
            if not zone_prefixes:
                return []
            statement = statement.where(or_(*(k.c.zone.startswith(p, autoescape=True)
                                              for p in zone_prefixes)))
        return [KpmLine(int(r.id), str(r.nik), str(r.zone), int(r.balance_sen))
                for r in self.rows(statement)]

    def shoppers(self, start: datetime) -> set[int]:
        """The KPM whose cards made a standing purchase from ``start`` to the end of the
        day (at any e-warong)."""
        r = RECORDS
        return {int(kpm) for (kpm,) in self.rows(
            select(CARDS.c.kpm_id).distinct()
            .join(r, r.c.card_id == CARDS.c.id)
            .where(*self.standing(), r.c.created_at >= start,
                   r.c.created_at < self.window.end))}
