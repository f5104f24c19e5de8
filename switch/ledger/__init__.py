"""The money: double-entry, idempotent, append-only; the only code that changes a
balance or opens an account (DESIGN.md).  Postings as values in :mod:`.money` (pure,
shared with the decision core), their writing and allocation in :mod:`.postings`,
accounts in :mod:`.accounts`, the money invariant in :mod:`.invariants`.  The tables
are the store's (:mod:`switch.db.tables`)."""
