"""The programme rules an administrator sets (docs/RULES.md): an e-warong's zones,
region, opening hours and UTC offset, a KPM's zone, and the reference prices.

Every change is audited with before and after, in the caller's transaction; a change
that changes nothing writes nothing.  Codes: a zone or region is 2, 4 or 6 digits
(province, regency, district: a prefix of the NIK's first 6); hours are
``HHMM-HHMM`` in the e-warong's local time (a close before the open spans midnight).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from switch.admin.csv_rows import BadLine, CsvRejected, positive_int, read_rows
from switch.admin.errors import InvalidInput, NotFound
from switch.clock import Clock
from switch.db import audit as chain
from switch.db.tables import Ewarong, EwarongZone, Item, Kpm, ReferencePrice
from switch.security.keyring import Keyring

REGION_LENGTHS = (2, 4, 6)
#: WIB, WITA, WIT.
UTC_OFFSETS_MINUTES = {420: "WIB", 480: "WITA", 540: "WIT"}
NATIONAL = ""


def region_code_problem(code: str) -> str | None:
    """Why ``code`` is not a zone or region code (2, 4 or 6 digits), or ``None``."""
    if not (code.isascii() and code.isdigit()) or len(code) not in REGION_LENGTHS:
        return f"{code!r} is not a 2, 4 or 6-digit region code"
    return None


def region_code(code: str) -> str:
    if problem := region_code_problem(code):
        raise InvalidInput(problem)
    return code


def parse_hours(text: str) -> tuple[str, str]:
    """``HHMM-HHMM`` → (open, close); a close before the open is overnight."""
    open_hhmm, sep, close_hhmm = text.partition("-")
    if not sep or not all(_is_hhmm(part) for part in (open_hhmm, close_hhmm)):
        raise InvalidInput(f"hours {text!r} are not HHMM-HHMM (00:00 to 23:59), "
                           "e.g. 0700-1700")
    if open_hhmm == close_hhmm:
        raise InvalidInput(f"hours {text!r} open and close at the same minute: "
                           "for no limit use --always-open")
    return open_hhmm, close_hhmm


def _is_hhmm(text: str) -> bool:
    return len(text) == 4 and text.isascii() and text.isdigit() \
        and int(text[:2]) < 24 and int(text[2:]) < 60


def utc_offset(minutes: int) -> int:
    if minutes not in UTC_OFFSETS_MINUTES:
        raise InvalidInput(f"UTC offset {minutes} is not one of "
                           + ", ".join(f"{m} ({name})" for m, name in UTC_OFFSETS_MINUTES.items()))
    return minutes


# -- e-warongs --------------------------------------------------------------------------

@dataclass(frozen=True)
class EwarongRules:
    mid: str
    #: Zone prefixes served, sorted; empty: every zone.
    zones: tuple[str, ...]
    #: ``None``: the national reference prices.
    region: str | None
    open_hhmm: str | None
    close_hhmm: str | None
    utc_offset_minutes: int

    @property
    def hours(self) -> str:
        if self.open_hhmm is None or self.close_hhmm is None:
            return "always open"
        overnight = " (overnight)" if self.close_hhmm < self.open_hhmm else ""
        return f"{self.open_hhmm}-{self.close_hhmm}{overnight}"

    def line(self) -> str:
        zones = ",".join(self.zones) or "all"
        zone_name = UTC_OFFSETS_MINUTES.get(self.utc_offset_minutes, "?")
        return (f"{self.mid}  zones {zones}  region {self.region or 'national'}  "
                f"hours {self.hours}  UTC+{self.utc_offset_minutes} ({zone_name})")

    def audited(self) -> dict[str, object]:
        fields = asdict(self)
        fields.pop("mid")
        fields["zones"] = list(self.zones)
        return fields


def _ewarong(session: Session, mid: str) -> Ewarong:
    ewarong = session.scalars(select(Ewarong).where(Ewarong.mid == mid)).first()
    if ewarong is None:
        raise NotFound(f"no e-warong {mid}")
    return ewarong


def _rules_of(session: Session, ewarong: Ewarong) -> EwarongRules:
    zones = session.scalars(select(EwarongZone.zone_prefix)
                            .where(EwarongZone.ewarong_id == ewarong.id)
                            .order_by(EwarongZone.zone_prefix))
    return EwarongRules(ewarong.mid, tuple(zones), ewarong.region, ewarong.open_hhmm,
                        ewarong.close_hhmm, ewarong.utc_offset_minutes)


def ewarong_rules(session: Session, mid: str | None = None) -> list[EwarongRules]:
    """The rules of every e-warong (or of ``mid``), by MID."""
    if mid is not None:
        return [_rules_of(session, _ewarong(session, mid))]
    return [_rules_of(session, ewarong)
            for ewarong in session.scalars(select(Ewarong).order_by(Ewarong.mid))]


@dataclass(frozen=True)
class RulesChange:
    """What to change (``None``: keep)."""

    zones: Sequence[str] | None = None
    #: ``""``: back to the national prices.
    region: str | None = None
    #: (open, close), or ``()``: always open.
    hours: tuple[str, str] | tuple[()] | None = None
    utc_offset_minutes: int | None = None


def set_ewarong_rules(session: Session, keys: Keyring, *, mid: str, change: RulesChange,
                      actor: str, clock: Clock) -> tuple[EwarongRules, EwarongRules]:
    """Apply ``change`` to the e-warong ``mid`` (validated first; the zones replace the
    set); audit ``ewarong.rules`` with before and after.  Returns (before, after)."""
    ewarong = _ewarong(session, mid)
    before = _rules_of(session, ewarong)
    zones = before.zones if change.zones is None else \
        tuple(sorted({region_code(zone) for zone in change.zones}))
    region = before.region if change.region is None else \
        (region_code(change.region) if change.region else None)
    if change.hours is None:
        open_hhmm, close_hhmm = before.open_hhmm, before.close_hhmm
    elif change.hours == ():
        open_hhmm, close_hhmm = None, None
    else:
        open_hhmm, close_hhmm = parse_hours("-".join(change.hours))
    offset = before.utc_offset_minutes if change.utc_offset_minutes is None else \
        utc_offset(change.utc_offset_minutes)
    after = EwarongRules(mid, zones, region, open_hhmm, close_hhmm, offset)
    if after == before:
        return before, after
    if zones != before.zones:
        session.execute(delete(EwarongZone).where(EwarongZone.ewarong_id == ewarong.id))
        session.add_all(EwarongZone(ewarong_id=ewarong.id, zone_prefix=zone) for zone in zones)
    ewarong.region, ewarong.open_hhmm, ewarong.close_hhmm = region, open_hhmm, close_hhmm
    ewarong.utc_offset_minutes = offset
    session.flush()
    chain.append(session, keys.audit_key, at=clock.now(), actor=actor, action="ewarong.rules",
                 subject=mid, detail={"before": before.audited(), "after": after.audited()})
    return before, after


# -- KPM zone ---------------------------------------------------------------------------

def set_kpm_zone(session: Session, keys: Keyring, *, nik: str, zone: str, actor: str,
                 clock: Clock) -> tuple[int, str, str]:
    """The zone a KPM lives in (audit ``kpm.zone``, subject ``kpm:<id>``: the NIK is
    not written).  Returns (KPM id, before, after)."""
    zone = region_code(zone)
    kpm = session.scalars(select(Kpm).where(Kpm.nik == nik)).first()
    if kpm is None:
        raise NotFound(f"no KPM with NIK {nik[:6]}…")
    before = kpm.zone
    if before != zone:
        kpm.zone = zone
        session.flush()
        chain.append(session, keys.audit_key, at=clock.now(), actor=actor, action="kpm.zone",
                     subject=f"kpm:{kpm.id}", detail={"before": before, "after": zone})
    return kpm.id, before, zone


# -- reference prices -------------------------------------------------------------------

@dataclass(frozen=True)
class PriceLine:
    line: int
    item_code: str
    region: str
    unit_price_sen: int


def set_reference_price(session: Session, keys: Keyring, *, item_code: str, region: str,
                        unit_price_sen: int, actor: str,
                        clock: Clock) -> tuple[int | None, int]:
    """Upsert the reference price of ``item_code`` in ``region`` (``''``: national);
    audit ``price.reference``.  Returns (the price before or ``None``, after)."""
    if region:
        region_code(region)
    if unit_price_sen <= 0:
        raise InvalidInput(f"a unit price is a positive number of sen, not {unit_price_sen}")
    if session.get(Item, item_code) is None:
        raise NotFound(f"no item {item_code}")
    row = session.get(ReferencePrice, (item_code, region))
    before = None if row is None else int(row.unit_price_sen)
    if before == unit_price_sen:
        return before, unit_price_sen
    now = clock.now()
    if row is None:
        session.add(ReferencePrice(item_code=item_code, region=region,
                                   unit_price_sen=unit_price_sen, updated_at=now))
    else:
        row.unit_price_sen, row.updated_at = unit_price_sen, now
    session.flush()
    chain.append(session, keys.audit_key, at=now, actor=actor, action="price.reference",
                 subject=f"{item_code}:{region or 'national'}",
                 detail={"before_sen": before, "unit_price_sen": unit_price_sen})
    return before, unit_price_sen


PRICE_COLUMNS = ("item", "region", "unit_price_sen")


def read_price_file(session: Session, path: Path) -> list[PriceLine]:
    """Every row of a reference price file, validated; any bad line raises
    :class:`~switch.admin.csv_rows.CsvRejected` listing all of them."""
    known_items = set(session.scalars(select(Item.code)))
    bad: list[BadLine] = []
    good: list[PriceLine] = []
    seen: dict[tuple[str, str], int] = {}
    for row in read_rows(path, PRICE_COLUMNS):
        item, region = row.values["item"], row.values["region"]
        price = positive_int(row.values["unit_price_sen"])
        reasons = []
        if item not in known_items:
            reasons.append(f"unknown item {item!r}")
        if region and (problem := region_code_problem(region)):
            reasons.append(f"region {problem}")
        if price is None:
            reasons.append(f"unit_price_sen {row.values['unit_price_sen']!r} is not a "
                           "positive integer")
        if (item, region) in seen:
            reasons.append(f"{item} {region or 'national'} again (line {seen[item, region]})")
        else:
            seen[item, region] = row.line
        if reasons or price is None:
            bad.append(BadLine(row.line, "; ".join(reasons)))
        else:
            good.append(PriceLine(row.line, item, region, price))
    if bad:
        raise CsvRejected(path, bad)
    return good


def import_prices(session: Session, keys: Keyring, lines: Sequence[PriceLine], *,
                  actor: str, clock: Clock) -> tuple[int, int]:
    """Set every line's price in the caller's transaction: (changed, unchanged)."""
    changed = 0
    for line in lines:
        before, after = set_reference_price(session, keys, item_code=line.item_code,
                                            region=line.region,
                                            unit_price_sen=line.unit_price_sen,
                                            actor=actor, clock=clock)
        changed += before != after
    return changed, len(lines) - changed
