"""Opening accounts.  An account opens at zero; only postings
(:mod:`switch.ledger.postings`) change a balance afterwards.

The KPM import opens wallets in bulk, either by binary COPY of the rows made by
:func:`wallet_copy_rows` (:data:`WALLET_COPY`) or from its stage table with
:func:`open_wallets_from_stage`; registration opens one account at a time with
:func:`get_or_create_account`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, bindparam, select, text
from sqlalchemy.orm import Session

from switch.db.tables import ACCOUNT_KINDS, Account
from switch.ledger.money import require

OPENING_BALANCE_SEN = 0
#: The binary COPY of new KPM wallets, and its column types.
WALLET_COPY = ("COPY accounts (id, kind, owner_ref, balance_sen, created_at) "
               "FROM STDIN (FORMAT BINARY)", ("int4", "text", "text", "int8", "timestamptz"))


def get_or_create_account(session: Session, kind: str, owner_ref: str) -> Account:
    """The account of ``owner_ref`` (a KPM ``NIK:...``, an e-warong MID, ``BPNT``)."""
    require(kind in ACCOUNT_KINDS, f"unknown account kind {kind!r}")
    account = session.scalars(
        select(Account).where(Account.kind == kind, Account.owner_ref == owner_ref)
    ).first()
    if account is None:
        account = Account(kind=kind, owner_ref=owner_ref, balance_sen=0)
        session.add(account)
        session.flush()
    return account


def wallet_copy_rows(wallets: Iterable[tuple[int, str]], now: datetime
                     ) -> Iterator[tuple[Any, ...]]:
    """The :data:`WALLET_COPY` rows of new wallets, given (account id, owner ref)."""
    for account_id, owner_ref in wallets:
        yield (account_id, "kpm_wallet", owner_ref, OPENING_BALANCE_SEN, now)


def open_wallets_from_stage(session: Session, stage: str, owner_column: str,
                            now: datetime) -> None:
    """A wallet for every row of the import's ``stage`` table (in line order), owned by
    its ``owner_column``."""
    stamp = bindparam("now", value=now, type_=DateTime(timezone=True))
    session.execute(text(
        "INSERT INTO accounts (kind, owner_ref, balance_sen, created_at) "
        f"SELECT 'kpm_wallet', {owner_column}, {OPENING_BALANCE_SEN}, :now FROM {stage} "
        "ORDER BY line").bindparams(stamp))
