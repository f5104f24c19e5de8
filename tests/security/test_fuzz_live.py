"""A short run of the live-switch fuzzer (``make fuzz`` runs 100,000 inputs)."""

from __future__ import annotations

from pathlib import Path

from loadtest.fuzz import run


def test_short_fuzz_run_has_no_crash_no_hang(tmp_path: Path) -> None:
    assert run(inputs=1200, workers=4, seed=1, workdir=tmp_path, rerecord=False) == 0
