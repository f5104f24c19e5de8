"""The ledger: double-entry, idempotent, append-only; the only code that writes money
(DESIGN.md).  Tables in :mod:`.models`, postings in :mod:`.postings`, the money
invariant in :mod:`.invariants`."""
