"""The chaos harness (FAILURES F8, F13, F14): EDC load on a running switch, a fault at
set times, then a Jepsen-style verdict from the terminals' own history against the
database.  ``python -m loadtest.chaos --list``; docs/CHAOS.md.

Modules: :mod:`.cli` (the command), :mod:`.config` (what a run is asked to do),
:mod:`.harness` (the run and its timeline), :mod:`.context` (what a scenario gets),
:mod:`.switches`, :mod:`.postgres`, :mod:`.sqlite_volume` (what the harness starts and
breaks), :mod:`.load` and :mod:`.terminal` (the EDC fleet), :mod:`.history` (what the
terminals saw), :mod:`.ledger_rows` and :mod:`.checker` (the verdict), :mod:`.metrics`
and :mod:`.report`; :mod:`.scenarios` holds one module per scenario and the registry.
"""
