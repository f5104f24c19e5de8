"""Serial at a real 9600 baud (960 bytes/s each way) with byte corruption:
:mod:`terminal_sim.serial_noise` (``bpnt-switch serve --serial`` in its own process, a
noisy cable, an EDC), whose full runs (100 purchases) are the command's; here fewer
purchases at the same pacing.  Its own checks are the money's: invariants, each
approval one debit, each failed purchase net zero."""

from __future__ import annotations

from pathlib import Path

import pytest

from terminal_sim.serial_noise import main, run_serial_noise


def test_point_05_percent_corruption_at_9600_baud_completes_every_purchase(
    tmp_path: Path,
) -> None:
    """A 215-byte frame is damaged 10 % of the time at 0.05 %: one NAK and one
    retransmission each, never a link down."""
    report = run_serial_noise(baud=9600, corruption=0.0005, purchases=10, seed=3,
                              workdir=tmp_path)
    print(report.verdict())
    assert report.passed, report.verdict()
    assert report.endings == {"approved": 10}
    # Real pacing: each way, every byte took 1/960 s.
    assert report.elapsed_s >= max(report.to_switch.bytes_carried,
                                   report.to_terminal.bytes_carried) / 960
    assert report.to_switch.bytes_corrupted > 0, "precondition: a noisy line (seed 3)"
    assert report.terminal_line.links_down == report.switch_links_down == 0
    # No NAK storms: a damaged frame costs the switch one NAK (it cost one per STX byte
    # inside the damaged frame, each one a retransmission used up).
    assert 0 < report.terminal_line.naks_received <= report.to_switch.bytes_corrupted
    assert report.terminal_line.retransmits >= report.terminal_line.naks_received


def test_one_percent_corruption_fails_cleanly_and_reversals_settle(tmp_path: Path) -> None:
    """At 1 % a 215-byte request arrives whole 0.99**215 ≈ 11.5 % of the time: most
    purchases end in a link down (or no response), each one cleanly: TIME-OUT, the EDC
    idle with its reversal pending, delivered once the line recovers; no money lost."""
    report = run_serial_noise(baud=9600, corruption=0.01, purchases=4, seed=1,
                              timeout_s=5.0, workdir=tmp_path)
    print(report.verdict())
    assert report.passed, report.verdict()
    failed = report.failed
    assert failed, "precondition: no purchase failed at 1 % (seed 1)"
    assert all(o.clean and o.reversal_delivered for o in failed)
    assert report.endings["link down"] >= 1
    assert not report.pending_at_end


def test_the_command_prints_a_verdict_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--corruption", "0", "--purchases", "2", "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "2 purchases" in out and "2 approved" in out and out.rstrip().endswith(
        "each failed purchase net zero")
