"""The store layer: tables (:mod:`.tables`), engine and transactions (:mod:`.engine`),
migrations (:mod:`.schema`, ``migrations/``) and the hot path's statements
(:mod:`.sql`, :mod:`.bulk`).  No money rule lives here: balances change only in
:mod:`switch.ledger.postings`."""
