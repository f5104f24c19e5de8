"""Issue 17: "10,000 idle terminal connections held while a purchase completes within 1 s".

The whole check (loadtest/idle_connections.py) against a real ``bpnt-switch serve``
process: always the full 10,000 (7 to 9 s on 2 cores), under CI and off it.  Only off
CI, and only when this machine's hard open-file limit cannot hold them, it is skipped
with the reason; under ``CI=true`` it runs, and such a limit fails it.  A second run
shows the check can fail: a switch allowed fewer connections than are opened is
reported FAIL, with the refused connections found closed.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

import pytest

from loadtest.idle_connections import OWN_MARGIN, Args, run

FULL = 10_000


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _need_descriptors(count: int) -> None:
    """Skip off CI when the hard limit is below what ``count`` connections need (under
    CI, run() fails with the reason instead)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if not _in_ci() and hard != resource.RLIM_INFINITY and hard < count + OWN_MARGIN:
        pytest.skip(f"hard open-file limit {hard} < {count + OWN_MARGIN} (CI fails here)")


@pytest.mark.slow
def test_ten_thousand_idle_connections_held_while_a_purchase_completes(
        tmp_path: Path) -> None:
    _need_descriptors(FULL)
    lines: list[str] = []
    result = run(Args(connections=FULL, out=tmp_path, max_total_s=120.0), out=lines.append)
    log = "\n".join(lines)
    assert result.passed, log
    assert lines[-1].startswith("VERDICT: PASS"), log
    assert result.opened == FULL and not result.failed_connects, log
    for held in (result.before, result.after):
        assert held is not None and held.gauge == FULL and held.open == FULL, log
    assert result.purchase_rc == "00", log
    assert result.purchase_s is not None and result.purchase_s <= 1.0, log
    # started with a soft limit of 1,024, the switch raised its own for 10,064 connections
    assert any("open-file limit raised from" in line for line in lines), log


@pytest.mark.slow
def test_a_switch_holding_fewer_is_a_fail(tmp_path: Path) -> None:
    count, limit = 1500, 1200
    _need_descriptors(count)
    lines: list[str] = []
    result = run(Args(connections=count, switch_max_connections=limit, out=tmp_path,
                      max_total_s=60.0), out=lines.append)
    log = "\n".join(lines)
    assert not result.passed, log
    assert lines[-1].startswith("VERDICT: FAIL"), log
    before = result.before
    assert before is not None and before.gauge == limit, log
    assert before.open == limit and before.closed + before.reset == count - limit, log
    # the EDC's connection is refused too: no logon, no purchase
    assert result.purchase_rc is None, log
