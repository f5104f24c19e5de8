"""The day's reconciliation report (HOST_SPEC 1.1 §4; FAILURES F2): per e-warong and per
terminal, what the switch approved, what the terminals settled, what the batch uploads
showed, and what the programme owes each e-warong, with a red line for every double
posting and every payable that does not add up.

**The day** is a calendar day in the switch's local zone, WIB (UTC+7, no daylight
saving; :data:`switch.clock.WIB`): from 00:00:00 WIB inclusive to 00:00:00 WIB of the
next day exclusive, i.e. ``[D-1 17:00:00 UTC, D 17:00:00 UTC)``.  Records,
settlements and transfers belong to the day by their ``created_at`` (stored UTC, the
switch's clock when it decided; a record and the transfer it posted are written in one
transaction with one timestamp, so they always fall on the same day).  DE 13 (the
terminal's date) plays no part.

**The switch's totals** of a terminal are the day's events: approved purchases (0210,
DE 3 000000, RC 00), approved voids (020000, RC 00), reversals that restored a
purchase's debit to the wallet, and reversals of voids that reinstated the purchase's
debit.  Net debits = purchases − voids − purchase reversals + void reversals: the
e-warong's due from its terminals' records.  A reversal that moved nothing (unknown
original, a declined original, a voided purchase, or a void that stands because the
wallet no longer covers the purchase) is counted apart and listed.

**What the programme owes** an e-warong for the day is its payable account's net
movement: the sum of ``journal_entries.amount_sen`` on that account for the transfers
created that day.  It must equal the net debits of its terminals' records; if it does
not, a red line.

**Double postings (F2).**  A purchase transfer's idempotency key is
``pur:TID:YYYYMMDD:STAN`` (the request's key, :meth:`RequestKey.transfer_key`) and one
approved record claims it (``request_records.transfer_id``).  The unique keys allow one
request record per (TID, key date, STAN) and one record per transfer, so a second
purchase transfer for one key is necessarily claimed by no approved record: every
purchase (void, reversal) transfer of the day that no approved record claims is a red
line, named a double posting when another purchase transfer or an approved record
holds the same (TID, key date, STAN).  Checked too, although the schema forbids them:
two approved purchase records of one key, two records sharing a transfer, and an
approved purchase or void without its own transfer of its amount.

**Duplicates** (HOST_SPEC §4).  A message sent again under a key the switch had
answered (TID, DE 13, STAN; a request, a reversal, a batch upload or a settlement) is
replayed, the stored answer again, when its content is the same, and refused 94 when it
is not.  The switch audits each (:func:`switch.core.replies.replay`: ``duplicate.replay``
/ ``duplicate.refused``, actor ``terminal:TID``, subject the STAN, the original's RRN
and RC), and the report counts them per terminal and per e-warong and lists them.  A
duplicate belongs to the day by its audit record's ``at``, the switch's clock when it
answered (ISO 8601 with an offset, compared as an instant:
:mod:`switch.reports.recon_queries`), not by its original's day.  Neither is a red
line: a replay is a terminal that heard no answer, a 94 a terminal that reused a STAN.

One function reads (:func:`reconciliation`, SQLAlchemy Core, one read-only transaction:
PostgreSQL REPEATABLE READ, SQLite a deferred ``BEGIN`` in WAL mode, both one
snapshot) and returns a :class:`Report`; :func:`render_md`, :func:`render_csv` and
:func:`summary_lines` only format it.  It never writes.  The parts:
:mod:`~switch.reports.recon_model` what a report holds,
:mod:`~switch.reports.recon_queries` the reads of the day's events,
:mod:`~switch.reports.recon_checks` the red lines and notes,
:mod:`~switch.reports.recon_render` Markdown, CSV and the console lines.
"""

from __future__ import annotations

from datetime import date

from switch.db.engine import Database
from switch.reports.recon_checks import MAX_FETCHED, check
from switch.reports.recon_model import (
    Anomaly,
    DifferenceLine,
    DuplicateLine,
    EwarongReport,
    Report,
    ReversalLine,
    SettlementLine,
    SwitchTotals,
    TerminalReport,
    UnknownEwarong,
    VoidLine,
    Window,
    day_window,
    parse_day,
)
from switch.reports.recon_queries import VOID_STANDS, DayReader
from switch.reports.recon_render import (
    CSV_COLUMNS,
    csv_rows,
    render_csv,
    render_md,
    summary_lines,
)

__all__ = [
    "CSV_COLUMNS", "MAX_FETCHED", "VOID_STANDS", "Anomaly", "DifferenceLine",
    "DuplicateLine", "EwarongReport", "Report", "ReversalLine", "SettlementLine",
    "SwitchTotals", "TerminalReport", "UnknownEwarong", "VoidLine", "Window", "csv_rows",
    "day_window", "parse_day", "reconciliation", "render_csv", "render_md", "summary_lines",
]


def reconciliation(db: Database, day: date, mid: str | None = None) -> Report:
    """The report of the WIB day ``day`` (for the e-warong ``mid`` only, if given), read
    in one read-only transaction; :class:`UnknownEwarong` if ``mid`` is not registered."""
    with db.read() as connection:
        if connection.dialect.name == "postgresql":  # one snapshot for every query
            connection.exec_driver_sql(
                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        reader = DayReader(connection, day_window(day), mid)
        report = reader.read_day()
        check(reader)
        return report
