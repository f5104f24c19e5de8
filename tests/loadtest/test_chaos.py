"""The chaos harness end to end (loadtest/chaos): the CI version of each scenario
against real ``bpnt-switch serve`` processes passes the checker and the scenario's
promises, and a deliberately broken switch (tests/loadtest/chaos_broken_switch.py)
makes the checker FAIL.

db-outage on SQLite mounts a tmpfs (root); on PostgreSQL it runs the harness's own
cluster (the server binaries).  Without them these tests skip with the reason,
except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from loadtest.chaos.cli import ci_config, run_bounded, summary
from loadtest.chaos.config import RunConfig
from loadtest.chaos.harness import RunResult
from loadtest.chaos.history import read_jsonl
from loadtest.chaos.postgres import pg_bindir
from loadtest.chaos.scenarios import get
from loadtest.chaos.sqlite_volume import unavailable

pytestmark = pytest.mark.slow
BROKEN_SWITCH = "tests.loadtest.chaos_broken_switch"


def require(problem: str | None) -> None:
    if problem is None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{problem} (CI=true: required)")
    pytest.skip(problem)


def require_engine(engine: str) -> None:
    if engine == "postgresql":
        require(None if pg_bindir() else "PostgreSQL server binaries (initdb, pg_ctl) not found")


def ci_run(tmp_path: Path, scenario: str, **changes: object) -> tuple[RunResult, str]:
    lines: list[str] = []
    cfg = ci_config(RunConfig(scenario, out=tmp_path), get(scenario))
    result = run_bounded(replace(cfg, **changes), out=lines.append)  # type: ignore[arg-type]
    return result, "\n".join([*lines, summary(result)])


def assert_reported(result: RunResult) -> None:
    """report.md carries the verdict, the plot is drawn, history.jsonl holds the run."""
    report = (result.run_dir / "report.md").read_text(encoding="utf-8")
    assert f"**Verdict: {'PASS' if result.ok else 'FAIL'}**" in report
    assert (result.run_dir / "timeline.png").stat().st_size > 1000
    exchanges = read_jsonl(result.run_dir / "history.jsonl")
    assert sum(e.op == "purchase" for e in exchanges) == result.figures.purchases
    assert sum(e.op == "reversal" and e.outcome != "not-sent" for e in exchanges) == \
        result.figures.reversals_sent


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_db_outage(engine: str, tmp_path: Path) -> None:
    require_engine(engine)
    if engine == "sqlite":
        require(unavailable())
    result, log = ci_run(tmp_path, "db-outage", engine=engine)
    assert result.ok, log
    fig = result.figures
    assert len(fig.windows) == 1
    # PostgreSQL refuses connections, SQLite's COMMIT says SQLITE_FULL: either way the
    # switch knows nothing of the batch committed, so it answers 91 (HOST_SPEC §5)
    assert sum(n for rc, n in fig.by_rc.items() if rc.startswith("91")) > 0, log
    assert fig.windows[0].first_91_s is not None and fig.windows[0].first_91_s <= 2.0
    assert fig.windows[0].first_failure_s is not None
    assert fig.windows[0].first_failure_s <= 2.0, log
    assert fig.timeouts == 0, log
    assert fig.approved > 0 and fig.windows[0].recovery_s is not None
    assert_reported(result)


def test_switch_kill_twice_with_two_switches(tmp_path: Path) -> None:
    result, log = ci_run(tmp_path, "switch-kill", switches=2, repeat=2)
    assert result.ok, log
    fig = result.figures
    assert [w.window.label for w in fig.windows] == ["switch 0 killed", "switch 1 killed"]
    assert all(w.terminals_touched > 0 for w in fig.windows), "the kills were felt"
    assert fig.by_outcome["link-down"] + fig.by_outcome["timeout"] > 0, log
    assert_reported(result)


def test_switch_pause_on_postgresql(tmp_path: Path) -> None:
    require_engine("postgresql")
    result, log = ci_run(tmp_path, "switch-pause", engine="postgresql")
    assert result.ok, log
    fig = result.figures
    # paused longer than the EDC time-out: purchases timed out, were decided after
    # SIGCONT, and their reversals gave the money back
    assert fig.timeouts > 0, log
    assert fig.keys_reversed >= fig.timeouts, log
    assert result.verdict.standing_debits == result.verdict.standing_approvals
    assert_reported(result)


@pytest.mark.parametrize(("mode", "rule"), [("rollback", "approval-is-one-debit"),
                                            ("decline", "debit-seen-or-reversed")])
def test_a_broken_switch_fails_the_checker(mode: str, rule: str, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Approvals whose commit was dropped, or debits answered 05: the database alone is
    consistent (the ledger's own invariant holds), only the history shows the loss."""
    monkeypatch.setenv("CHAOS_BROKEN_MODE", mode)
    result, log = ci_run(tmp_path, "steady", switch_module=BROKEN_SWITCH, duration_s=6.0)
    assert not result.verdict.ok and not result.ok, log
    assert set(result.verdict.by_rule()) == {rule}, log
    assert result.verdict.by_rule()[rule] >= 3, log
    assert_reported(result)


def test_the_command_lists_and_refuses() -> None:
    env = dict(os.environ)
    listed = subprocess.run([sys.executable, "-m", "loadtest.chaos", "--list"],
                            capture_output=True, text=True, timeout=60, env=env, check=False)
    assert listed.returncode == 0, listed.stderr
    names = {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}
    assert {"db-outage", "switch-kill", "switch-pause", "steady"} <= names
    unknown = subprocess.run([sys.executable, "-m", "loadtest.chaos", "no-such-fault"],
                             capture_output=True, text=True, timeout=60, env=env, check=False)
    assert unknown.returncode == 2 and "no scenario" in unknown.stderr
