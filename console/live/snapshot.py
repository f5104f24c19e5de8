"""The dashboard's snapshot: one JSON-able dict, for the whole system or one e-warong.

Schema (``schema`` 1; times are ISO 8601 UTC; rates are fractions 0..1; a series is a
list with one value per minute of ``minutes``, oldest first, the last the current one)::

    schema, generated_at, last_record_id, polls
    scope:      {"ewarong_id": int | null, "mid": str | null}
    database:   {"ok": bool, "error": str | null}
    minutes:    [ISO minute, ...]                       # 60 of them
    tiles:      {approved_minute, declined_minute, approved_hour, declined_hour,
                 purchases_approved_hour, purchases_declined_hour, rc_91_hour,
                 rc_96_hour, no_answer_hour, timeouts_hour, backlog, terminals_online,
                 terminals_offline, rule_alerts_hour, spikes_hour}
    series:     {by_rc: {RC: [n]}, purchases: {approved: [n], declined: [n]},
                 failures: {"91": [n], "96": [n], no_answer: [n], timeouts: [n]},
                 reversals: {class: [n]}, backlog: [n],
                 by_transport: {transport: [n]} | {}, latency_ms: {p50: [ms|null],
                 p99: [ms|null]}}
    switch:     {available: bool, errors: {url: text}, gauges: {name{labels}: value}}
                | null (an e-warong's view)
    backlog:    {window_minutes, failed_answers, reversals, reversals_no_original,
                 reversals_after_approval, outstanding}
    regions:    [{level: province|regency, code, requests, declined, timeouts,
                  decline_rate, timeout_rate, spike: [decline|timeout]}]
    ewarongs:   [{id, mid, name, requests, declined, timeouts, decline_rate,
                  timeout_rate, spike: [...]}]
    spike_alerts: [{minute, level, code, kind, rate, baseline, requests}]  newest first
    terminals:  {online, offline, list: [{tid, status, last_seen_at, source}]}
                (presence for MQTT terminals; the others are ``active`` with their
                last request as last seen)
    rule_alerts: [{id, at, rule, action, tid, mid, detail}]               newest first

**RC 91/96 and no answer**: a 91 commits nothing (the batch rolled back,
docs/ARCHITECTURE.md), so the database rarely holds one, and a request closed without
an answer leaves no record at all; ``failures`` takes the switches' metrics
(``bpnt_requests_total{mti="0200"}`` with ``rc`` 91, 96 or ``none``) when they answer,
the records otherwise (no ``no_answer`` then).  **Time-outs** are the reversals
received (an EDC sends a 0400 only after a time-out or an unusable answer, HOST_SPEC
§5).

**Reversal backlog** (an estimate): the purchases the switches answered 91/96 or not at
all (``failed_answers``, from their metrics, minute by minute) less the reversals
received in the same minutes, carried over from minute to minute and never below 0
(``series.backlog``; ``outstanding`` is its last value): EDCs that should still be
holding a reversal (HOST_SPEC §5: sent before their next transaction).  It is an
estimate both ways, as the switch cannot match a 91 to its reversal (a 91 leaves no
record): a *signed* 91 is a plain decline and needs no reversal (too high), and an
answer lost after the switch sent it brings a reversal no failure was counted for (too
low).  Without metrics it is ``null``.  ``reversals_no_original`` counts the reversals
whose original never reached the records, ``reversals_after_approval`` those of
requests the switch had approved (the answer was lost: money moved and came back).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from console.live.rows import NO_ORIGINAL, AlertRow, PresenceRow
from console.live.spikes import group_spikes
from console.live.state import LiveState, SpikeAlert
from console.live.switch_metrics import NO_ANSWER, quantile
from console.live.window import Scope, ScopeMinute, Tally

SCHEMA = 1
SPIKE_MINUTES = 16
TABLE_ROWS = 25
LISTED_TERMINALS = 200
LISTED_ALERTS = 50
ONLINE = "online"


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _sum(tallies: Iterable[Tally]) -> Tally:
    total = Tally()
    for tally in tallies:
        total.add(tally)
    return total


def _group_minutes(series: list[ScopeMinute], level: str) -> dict[str, list[Tally]]:
    codes = {code for m in series for code in getattr(m, level)}
    return {code: [getattr(m, level).get(code) or Tally() for m in series]
            for code in codes}


def _spikes(groups: dict[str, list[Tally]]) -> dict[tuple[str, str], Any]:
    """Spikes of the current and of the previous minute (a badge does not vanish as
    a new minute begins)."""
    out: dict[tuple[str, str], Any] = {}
    for end in (0, 1):
        minutes = {code: [(t.requests, t.declined, t.timeouts)
                          for t in tallies[len(tallies) - SPIKE_MINUTES - end:
                                           len(tallies) - end]]
                   for code, tallies in groups.items()}
        for key, found in group_spikes(minutes).items():
            out.setdefault(key, (found, end))
    return out


def detect_spikes(state: LiveState, now: datetime) -> None:
    """Flag the whole system's spikes (regions, e-warongs) and raise each once as an
    in-dashboard alert (:attr:`LiveState.spike_alerts`)."""
    series = state.window.series(None, now)
    labels = state.window.labels(now)
    groups: dict[str, dict[str, list[Tally]]] = {
        "province": _group_minutes(series, "provinces"),
        "regency": _group_minutes(series, "regencies"),
        "ewarong": {str(e): [m.tally for m in state.window.series(e, now)]
                    for e in state.window.ewarong_ids()}}
    for level, by_code in groups.items():
        for (code, kind), (found, end) in _spikes(by_code).items():
            minute = labels[len(labels) - 1 - end]
            key = (minute, level, code, kind)
            if key in state.raised:
                continue
            state.raised.add(key)
            state.spike_alerts.append(SpikeAlert(
                minute, level, code, kind, round(float(found.rate), 4),
                round(float(found.baseline), 4), found.requests,
                int(code) if level == "ewarong" else None))
    first = labels[0]
    state.raised = {k for k in state.raised if k[0] >= first}


def _table_row(tally: Tally, flags: list[str]) -> dict[str, Any]:
    return {"requests": tally.requests, "declined": tally.declined,
            "timeouts": tally.timeouts,
            "decline_rate": _rate(tally.declined, tally.requests),
            "timeout_rate": _rate(tally.timeouts, tally.requests), "spike": flags}


def _flags(spikes: dict[tuple[str, str], Any], code: str) -> list[str]:
    return [kind for kind in ("decline", "timeout") if (code, kind) in spikes]


def _worst(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows.sort(key=lambda r: (-len(r["spike"]), -(r["declined"] + r["timeouts"]),
                             -r["requests"], str(r.get("code", r.get("mid", "")))))
    return rows[:TABLE_ROWS]


def _regions(series: list[ScopeMinute]) -> list[dict[str, Any]]:
    rows = []
    for level, attribute in (("province", "provinces"), ("regency", "regencies")):
        groups = _group_minutes(series, attribute)
        spikes = _spikes(groups)
        rows += [{"level": level, "code": code, **_table_row(_sum(t), _flags(spikes, code))}
                 for code, t in groups.items()]
    return _worst(rows)


def _ewarongs(state: LiveState, now: datetime, scope: Scope) -> list[dict[str, Any]]:
    ids = [scope] if scope is not None else sorted(state.window.ewarong_ids())
    groups = {str(e): [m.tally for m in state.window.series(e, now)] for e in ids}
    spikes = _spikes(groups)
    rows = []
    for code, tallies in groups.items():
        registered = state.ewarongs.get(int(code))
        rows.append({"id": int(code), "mid": registered.mid if registered else None,
                     "name": registered.name if registered else None,
                     **_table_row(_sum(tallies), _flags(spikes, code))})
    return _worst(rows)


def _counts(series: list[ScopeMinute], pick: Any) -> list[int]:
    return [int(pick(m)) for m in series]


def _by_key(counters: list[Counter[str]]) -> dict[str, list[int]]:
    keys = sorted({k for c in counters for k in c})
    return {k: [c.get(k, 0) for c in counters] for k in keys}


def _switch_series(state: LiveState, labels: list[datetime]) -> dict[str, Any]:
    minutes = [state.metrics.minute(m) for m in labels]

    def ms(q: float) -> list[float | None]:
        values = [quantile(m.buckets, q) for m in minutes]
        return [None if v is None else round(v * 1e3, 2) for v in values]

    return {"by_transport": _by_key([m.by_transport for m in minutes]),
            "latency_ms": {"p50": ms(0.5), "p99": ms(0.99)},
            "purchase_rc": _by_key([m.purchase_rc for m in minutes])}


def _terminal(row: PresenceRow | None, tid: str, seen: datetime | None
              ) -> dict[str, Any]:
    last = max((t for t in (row.last_seen_at if row else None, seen) if t), default=None)
    return {"tid": tid, "status": row.status if row else "active",
            "source": row.source if row else "last request",
            "last_seen_at": _iso(last) if last else None}


def _terminals(state: LiveState, scope: Scope) -> dict[str, Any]:
    presence = {p.tid: p for p in state.presence if scope is None or p.ewarong_id == scope}
    seen = {tid: s.at for tid, s in state.last_seen.items()
            if scope is None or s.ewarong_id == scope}
    listed = [_terminal(presence.get(tid), tid, seen.get(tid))
              for tid in sorted(set(presence) | set(seen))]
    listed.sort(key=lambda t: (t["status"] == ONLINE, t["last_seen_at"] or ""), reverse=True)
    online = sum(p.status == ONLINE for p in presence.values())
    return {"online": online, "offline": len(presence) - online,
            "list": listed[:LISTED_TERMINALS]}


_SECRET_HINTS = ("pan", "nik", "pin", "card")


def _detail(text: str) -> dict[str, Any]:
    """An alert's figures, scalars only, and nothing that names a card or person."""
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(v, (int, float, str))
            and not any(hint in k.lower() for hint in _SECRET_HINTS)}


def _rule_alert(state: LiveState, row: AlertRow) -> dict[str, Any]:
    registered = state.ewarongs.get(row.ewarong_id) if row.ewarong_id is not None else None
    return {"id": row.id, "at": _iso(row.created_at), "rule": row.rule,
            "action": row.action, "tid": row.tid, "ewarong_id": row.ewarong_id,
            "mid": registered.mid if registered else None, "detail": _detail(row.detail)}


def _spike_alert(alert: SpikeAlert) -> dict[str, Any]:
    return {"minute": _iso(alert.minute), "level": alert.level, "code": alert.code,
            "kind": alert.kind, "rate": alert.rate, "baseline": alert.baseline,
            "requests": alert.requests}


def build(state: LiveState, now: datetime, scope: Scope = None) -> dict[str, Any]:
    """The snapshot of ``scope`` (``None``: the whole system; an id: that e-warong)."""
    labels = state.window.labels(now)
    series = state.window.series(scope, now)
    hour = _sum(m.tally for m in series)
    switch = _switch_series(state, labels) if scope is None else None
    metrics_ok = scope is None and state.metrics.available
    db_91_96 = {rc: _counts(series, lambda m, rc=rc: m.by_rc.get(rc, 0)) for rc in ("91", "96")}
    failures: dict[str, list[int]] = {
        rc: (switch["purchase_rc"].get(rc, [0] * len(labels)) if switch and metrics_ok
             else db_91_96[rc]) for rc in ("91", "96")}
    failures["no_answer"] = (switch["purchase_rc"].get(NO_ANSWER, [0] * len(labels))
                             if switch and metrics_ok else [0] * len(labels))
    failures["timeouts"] = _counts(series, lambda m: sum(m.reversals.values()))
    no_original = _counts(series, lambda m: m.reversals.get(NO_ORIGINAL, 0))
    failed = [a + b + c for a, b, c in zip(failures["91"], failures["96"],
                                           failures["no_answer"], strict=True)]
    running, backlog_series = 0, []
    for out, back in zip(failed, failures["timeouts"], strict=True):
        running = max(0, running + out - back)
        backlog_series.append(running)
    outstanding = backlog_series[-1] if metrics_ok else None
    by_rc = _by_key([m.by_rc for m in series])
    registered = state.ewarongs.get(scope) if scope is not None else None
    terminals = _terminals(state, scope)
    alerts = [a for a in state.rule_alerts if scope is None or a.ewarong_id == scope]
    spikes = [s for s in state.spike_alerts
              if scope is None or s.ewarong_id == scope]
    hour_start = labels[0]
    approved_minute = by_rc.get("00", [0])[-1]
    return {
        "schema": SCHEMA, "generated_at": _iso(now), "last_record_id": state.last_record_id,
        "polls": state.polls,
        "scope": {"ewarong_id": scope, "mid": registered.mid if registered else None},
        "database": {"ok": state.database_error is None, "error": state.database_error},
        "minutes": [_iso(m) for m in labels],
        "tiles": {
            "approved_minute": approved_minute,
            "declined_minute": series[-1].tally.declined,
            "approved_hour": sum(m.by_rc.get("00", 0) for m in series),
            "declined_hour": hour.declined,
            "purchases_approved_hour": sum(m.purchases_approved for m in series),
            "purchases_declined_hour": sum(m.purchases_declined for m in series),
            "rc_91_hour": sum(failures["91"]), "rc_96_hour": sum(failures["96"]),
            "no_answer_hour": sum(failures["no_answer"]) if metrics_ok else None,
            "timeouts_hour": hour.timeouts, "backlog": outstanding,
            "terminals_online": terminals["online"],
            "terminals_offline": terminals["offline"],
            "rule_alerts_hour": sum(a.created_at >= hour_start for a in alerts),
            "spikes_hour": sum(s.minute >= hour_start for s in spikes)},
        "series": {
            "by_rc": by_rc,
            "purchases": {"approved": _counts(series, lambda m: m.purchases_approved),
                          "declined": _counts(series, lambda m: m.purchases_declined)},
            "failures": failures,
            "reversals": _by_key([m.reversals for m in series]),
            "backlog": backlog_series if metrics_ok else [],
            "by_transport": switch["by_transport"] if switch else {},
            "latency_ms": switch["latency_ms"] if switch else {"p50": [], "p99": []}},
        "switch": None if scope is not None else {
            "available": state.metrics.available, "errors": dict(state.metrics.errors),
            "gauges": dict(state.metrics.gauges)},
        "backlog": {"window_minutes": len(labels),
                    "failed_answers": sum(failed) if metrics_ok else None,
                    "reversals": hour.timeouts,
                    "reversals_no_original": sum(no_original),
                    "reversals_after_approval": sum(
                        m.reversals.get("original_00", 0) for m in series),
                    "outstanding": outstanding},
        "regions": _regions(series),
        "ewarongs": _ewarongs(state, now, scope),
        "spike_alerts": [_spike_alert(s) for s in reversed(spikes)][:LISTED_ALERTS],
        "terminals": terminals,
        "rule_alerts": [_rule_alert(state, a) for a in reversed(alerts)][:LISTED_ALERTS],
    }

