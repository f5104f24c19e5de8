"""E-warong stock in a decision (FAILURES F15, docs/RULES.md).  Pure.

A purchase needs its basket's units of each item on its e-warong's shelf (else ST,
before any money moves) and takes them when approved; a void or a reversal gives them
back; a reversal of a void takes them again only if the shelf still holds them.

>>> need = units_needed("BRS005002000006500000TLR010001000002800000BRS005001000006500000")
>>> need
{'BRS005': 3, 'TLR010': 1}
>>> facts = {(7, "BRS005"): StockLevel(3), (7, "TLR010"): StockLevel(0)}
>>> short_items(7, need, facts)
['TLR010']
>>> [(m.item_code, m.delta_units) for m in moves(7, need, -1)]
[('BRS005', -3), ('TLR010', -1)]
"""

from __future__ import annotations

from collections.abc import Mapping

from switch.core.effects import AlertRaise, Effect, StockMove
from switch.core.facts import StockLevel
from switch.protocol.bpnt import BasketLine, decode_basket

_EMPTY = StockLevel(0)


def units_needed(basket: str | list[BasketLine] | None) -> dict[str, int]:
    """Units per item of a basket (DE 48 text or lines), every line of an item summed."""
    if basket is None:
        return {}
    lines = decode_basket(basket) if isinstance(basket, str) else basket
    need: dict[str, int] = {}
    for line in lines:
        need[line.item_code] = need.get(line.item_code, 0) + line.quantity
    return need


def short_items(ewarong_id: int, need: Mapping[str, int],
                stock: Mapping[tuple[int, str], StockLevel]) -> list[str]:
    """The items the shelf holds fewer units of than ``need`` (no row: none at all)."""
    short = []
    for item, units in need.items():
        level = stock.get((ewarong_id, item))
        if (0 if level is None else level.units) < units:
            short.append(item)
    return sorted(short) if len(short) > 1 else short


def moves(ewarong_id: int, need: Mapping[str, int], sign: int) -> list[StockMove]:
    """``need``'s units off (``sign`` −1) or back onto (+1) the e-warong's shelf."""
    items = sorted(need) if len(need) > 1 else need
    return [StockMove(ewarong_id, item, sign * need[item]) for item in items if need[item] > 0]


def low_stock_alerts(ewarong_id: int, need: Mapping[str, int],
                     stock: Mapping[tuple[int, str], StockLevel], default_threshold: int,
                     tid: str, record_id: int) -> list[Effect]:
    """A ``low_stock`` alert for each item this sale takes from at least its threshold
    to below it (once per crossing, not on every later sale)."""
    out: list[Effect] = []
    for item, units in need.items():
        level = stock.get((ewarong_id, item), _EMPTY)
        threshold = (level.low_threshold if level.low_threshold is not None
                     else default_threshold)
        after = level.units - units
        if level.units >= threshold > after:
            out.append(AlertRaise("low_stock", "flag", tid, ewarong_id, record_id, (),
                                  {"item": item, "quantity": after, "threshold": threshold}))
    return out
