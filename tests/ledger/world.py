"""A small ledger world for the ledger tests: program account, 3 active KPM, one
inactive KPM and one e-warong, on a real SQLite file.  No host, no cards."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from switch.db.engine import Database
from switch.db.schema import open_database
from switch.db.tables import Account, Ewarong, Kpm, RequestRecord, Transfer
from switch.ledger.postings import (
    get_or_create_account,
    post_transfer,
    program_account,
    reverse_transfer,
)

PERIOD_SEN = 20_000_000  # Rp 200.000, the BPNT monthly benefit
MID = "EWARONG00000001"
TID = "EDC00001"
ACTIVE_NIKS = ("3273014507900001", "3273014507900002", "3273014507900003")
INACTIVE_NIK = "3273014507900009"


@dataclass
class LedgerWorld:
    db: Database
    program: int
    wallets: list[int]
    inactive_wallet: int
    payable: int
    #: Set by a test that corrupts the ledger on purpose: skip the final check.
    corrupted: bool = False

    def balance(self, account_id: int) -> int:
        with self.db.transaction() as s:
            account = s.get(Account, account_id)
            assert account is not None
            return account.balance_sen

    def buy(self, stan: str, wallet: int, amount_sen: int, *, record: bool = True) -> int:
        """A purchase as the host posts it (HOST_SPEC §4): the transfer and its
        approved 0210 record in one transaction.  Returns the transfer id."""
        with self.db.transaction() as s:
            transfer = post_transfer(
                s, idempotency_key=f"pur:{TID}:1123:{stan}", kind="purchase",
                debit_account_id=wallet, credit_account_id=self.payable, amount_sen=amount_sen,
            )
            if record:
                s.add(RequestRecord(
                    tid=TID, local_date="1123", key_date="20261123", stan=stan, kind="request",
                    mti="0210",
                    processing_code="000000", amount_sen=amount_sen, request_hash="0" * 64,
                    response_code="00", response_unit=b"\x02\x10", transfer_id=transfer.id,
                ))
            return transfer.id

    def reverse(self, purchase_id: int, stan: str) -> int:
        """A reversal as the host posts it: the reversal transfer and its 0410 record."""
        with self.db.transaction() as s:
            original = s.get(Transfer, purchase_id)
            assert original is not None
            reversal = reverse_transfer(s, original, idempotency_key=f"rev:{TID}:1123:{stan}")
            s.add(RequestRecord(
                tid=TID, local_date="1123", key_date="20261123", stan=stan, kind="reversal",
                mti="0410",
                processing_code="000000", amount_sen=reversal.amount_sen,
                request_hash="1" * 64, response_code="00", response_unit=b"\x04\x10",
                transfer_id=reversal.id,
            ))
            return reversal.id


def _kpm(db: Database, nik: str, status: str) -> int:
    with db.transaction() as s:
        wallet = get_or_create_account(s, "kpm_wallet", f"NIK:{nik}")
        s.add(Kpm(nik=nik, name=f"KPM {nik[-4:]}", status=status, wallet_account_id=wallet.id))
        return wallet.id


def build_world(directory: Path) -> LedgerWorld:
    db = open_database(f"sqlite:///{directory / 'ledger' / 'ledger.db'}",
                       sqlite_synchronous="NORMAL")
    wallets = [_kpm(db, nik, "active") for nik in ACTIVE_NIKS]
    inactive = _kpm(db, INACTIVE_NIK, "inactive")
    with db.transaction() as s:
        program = program_account(s).id
        payable = get_or_create_account(s, "ewarong_payable", MID).id
        s.add(Ewarong(mid=MID, name="E-Warong Sejahtera", payable_account_id=payable))
    return LedgerWorld(db, program, wallets, inactive, payable)
