"""Coverage-guided fuzzing of the codec and the whole host path with atheris.

    python -m loadtest.atheris_fuzz -max_total_time=60 loadtest/fuzz_corpus_bin

Each input is one unit (TPDU + message) handed to ``HostService.process_unit``
on a seeded SQLite world.  Any exception other than a clean answer or a
``None`` (close) is a finding; atheris stops and writes the crashing input.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from switch.host.service import HostService
    from switch.protocol.errors import ProtocolError
    from switch.protocol.message import decode

import contextlib

from switch.admin.demo import build_world, seed_database
from switch.db.schema import open_database
from switch.ledger.postings import allocate_period
from switch.security.keyring import Keyring
from switch.settings import Settings

_workdir = Path(tempfile.mkdtemp(prefix="bpnt-atheris-"))
_settings = Settings(database_url=f"sqlite:///{_workdir / 'atheris.db'}")
_db = open_database(_settings.database_url, sqlite_synchronous="NORMAL")
seed_database(_db, Keyring.from_settings(_settings), build_world(kpm_count=10, terminal_count=2))
allocate_period(_db, "2026-11", _settings.period_amount_sen)
_host = HostService(_db, _settings)


def test_one_input(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode(data[5:])
    answer = _host.process_unit(data)
    assert answer is None or answer[:1] == b"\x60", "an answer always starts with a TPDU"


def main() -> None:
    corpus = Path(__file__).parent / "fuzz_corpus_bin"
    corpus.mkdir(exist_ok=True)
    for hex_file in (Path(__file__).parent / "fuzz_corpus").glob("*.hex"):
        (corpus / hex_file.stem).write_bytes(bytes.fromhex(hex_file.read_text().strip()))
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
