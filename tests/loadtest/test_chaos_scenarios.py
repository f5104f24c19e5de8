"""The chaos scenarios of the links (loadtest/chaos/scenarios: link, broker-restart,
mqtt-flood, serial-noise): the CI version of each against real ``bpnt-switch serve``
processes ends PASS (checker and promises); and the ``all`` suite's plan, summary
table and exit status (fake results), and its runner on real runs.

tests/loadtest/test_chaos.py runs the first scenarios (db-outage, switch-kill,
switch-pause, steady) and the broken switch.  The broker scenarios start their own
Mosquitto (never the system one on 1883): without it they skip, except under
``CI=true``, where they fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import pytest

from loadtest.chaos import suite
from loadtest.chaos.broker import unavailable as no_broker
from loadtest.chaos.cli import full_config
from loadtest.chaos.config import RunConfig
from loadtest.chaos.harness import RunResult
from loadtest.chaos.history import read_jsonl
from loadtest.chaos.scenarios import get, load_all
from loadtest.chaos.scenarios.link import STREAMS, TOXICS, schedule
from loadtest.chaos.suite import FAIL, NOT_RUN, PASS, SKIP, SuiteResult, SuiteRun
from tests.loadtest.test_chaos import ci_run, require


def assert_reported(result: RunResult) -> str:
    report = (result.run_dir / "report.md").read_text(encoding="utf-8")
    assert f"**Verdict: {'PASS' if result.ok else 'FAIL'}**" in report
    assert (result.run_dir / "timeline.png").stat().st_size > 1000
    exchanges = read_jsonl(result.run_dir / "history.jsonl")
    assert sum(e.op == "purchase" for e in exchanges) == result.figures.purchases
    return report


# -- the scenarios, CI versions -----------------------------------------------------------

@pytest.mark.slow
def test_link_every_toxic_both_ways(tmp_path: Path) -> None:
    result, log = ci_run(tmp_path, "link")
    assert result.ok, log
    fig = result.figures
    assert [w.window.label for w in fig.windows] == \
        [f"{t} {s}" for t in TOXICS for s in STREAMS], log
    by_label = {w.window.label: w for w in fig.windows}
    # the blackhole: requests or answers lost, the terminals time out and reverse
    for stream in STREAMS:
        assert by_label[f"timeout {stream}"].not_approved_inside["timeout"] > 0, log
        assert by_label[f"reset_peer {stream}"].not_approved_inside["link-down"] > 0, log
        assert by_label[f"limit_data {stream}"].not_approved_inside["link-down"] > 0, log
        assert sum(by_label[f"slicer {stream}"].not_approved_inside.values()) == 0, log
    assert fig.timeouts > 0 and fig.keys_reversed >= fig.timeouts, log
    assert result.verdict.standing_debits == result.verdict.standing_approvals
    report = assert_reported(result)
    assert "## Toxics" in report and "`limit_data`" in report


def test_link_schedule_picks_and_refuses() -> None:
    cfg = full_config(RunConfig("link"), get("link"))
    windows = schedule(cfg)
    assert len(windows) == 2 * len(TOXICS)
    assert {w.length_s for w in windows if w.toxic in ("latency", "timeout")} == \
        {cfg.timeout_s + 1}
    assert all(b.start_s >= a.start_s + a.length_s + 1.5 for a, b in pairwise(windows))
    assert windows[-1].start_s + windows[-1].length_s <= cfg.duration_s
    picked = schedule(replace(cfg, params={"toxics": "slicer,timeout", "streams": "upstream"}))
    assert [w.label for w in picked] == ["slicer upstream", "timeout upstream"]
    with pytest.raises(ValueError, match="no blackhole"):
        schedule(replace(cfg, params={"toxics": "blackhole"}))
    assert "raise --duration-s" in (get("link").unsupported(replace(cfg, duration_s=30)) or "")


@pytest.mark.slow
def test_broker_restart(tmp_path: Path) -> None:
    require(no_broker())
    result, log = ci_run(tmp_path, "broker-restart")
    assert result.ok, log
    fig = result.figures
    assert len(fig.windows) == 1 and fig.windows[0].terminals_touched > 0, log
    assert fig.timeouts + fig.by_outcome["not-sent"] > 0, "the restart was felt: " + log
    assert fig.windows[0].recovery_s is not None
    assert (result.run_dir / "mosquitto.log").exists()
    assert_reported(result)


@pytest.mark.slow
def test_mqtt_flood(tmp_path: Path) -> None:
    require(no_broker())
    result, log = ci_run(tmp_path, "mqtt-flood")
    assert result.ok, log
    assert result.figures.purchases == 400 and result.figures.approved == 400, log
    assert "## Flood" in assert_reported(result)


@pytest.mark.slow
def test_mqtt_flood_shed_requests_are_settled_by_their_reversals(tmp_path: Path) -> None:
    """Out-of-spec QoS 0 terminals and 2 slots in the switch for 12 of them: the switch
    sheds requests; each such terminal times out and its reversal settles it."""
    require(no_broker())
    result, log = ci_run(tmp_path, "mqtt-flood", terminals=12, purchases=72, timeout_s=1.5,
                         params={"qos": "0", "inflight": "2"})
    assert result.ok, log
    fig = result.figures
    assert fig.timeouts > 0 and fig.keys_reversed >= fig.timeouts, log
    assert "the switch shed 0" not in log, log


@pytest.mark.slow
def test_serial_noise_phases(tmp_path: Path) -> None:
    """9600 baud: 0.05 % completes its purchases, 1 % fails some, each leaving its
    reversal pending; the recovered line delivers them; no money lost."""
    result, log = ci_run(tmp_path, "serial-noise")
    assert result.ok, log
    fig = result.figures
    assert result.cfg.switches == result.cfg.terminals == 2  # a switch per line
    assert [w.window.label for w in fig.windows] == ["phase 2: 1 %"]
    assert fig.by_outcome["link-down"] + fig.by_outcome["timeout"] > 0, log
    assert fig.reversals_pending == 0 and fig.keys_reversed > 0, log
    assert fig.windows[0].recovery_s is not None
    report = assert_reported(result)
    assert "## Phases" in report and "| phase 2 | 1.00% |" in report, report


# -- the `all` suite ----------------------------------------------------------------------

def test_the_suite_plans_every_scenario_on_each_engine() -> None:
    scenarios = load_all()
    runs = suite.plan(scenarios)
    assert {(r.scenario, r.engine) for r in runs if r.switches == 1} == \
        {(name, engine) for name, s in scenarios.items() for engine in s.engines
         if s.in_suite}
    assert "pg-failover" in scenarios and "pg-failover" not in {r.scenario for r in runs}
    assert SuiteRun("switch-kill", "sqlite", switches=2, repeat=3) in runs
    assert {"link", "broker-restart", "mqtt-flood", "serial-noise", "db-outage",
            "switch-kill", "switch-pause", "steady"} <= {r.scenario for r in runs}


def fake_suite(verdicts: dict[str, str], *, unsupported: frozenset[str] | set[str] = frozenset(),
               ci_strict: bool = False, max_total_s: float = 900.0,
               seconds: float = 10.0) -> suite.SuiteOutcome:
    runs = [SuiteRun(name, "sqlite") for name in verdicts]

    def runner(run: SuiteRun, max_s: float) -> SuiteResult:
        assert max_s <= suite.RUN_MAX_S
        return SuiteResult(run, verdicts[run.scenario], seconds, f"var/chaos/{run.scenario}")

    return suite.run_suite(runs, ci=True, max_total_s=max_total_s, runner=runner,
                           unsupported=lambda r: "needs root" if r.scenario in unsupported
                           else None, out=lambda _line: None, ci_strict=ci_strict)


def test_the_suite_table_and_exit_status() -> None:
    outcome = fake_suite({"steady": PASS, "link": PASS})
    lines = suite.table(outcome)
    assert lines[:2] == ["| scenario | engine | verdict | seconds | report |",
                         "|---|---|---|---|---|"]
    assert "| steady | sqlite | PASS | 10 | var/chaos/steady |" in lines
    assert lines[-1].endswith("2 PASS; suite PASS")
    assert suite.exit_status(outcome.results) == 0
    failed = fake_suite({"steady": PASS, "link": FAIL})
    assert suite.exit_status(failed.results) == 1
    assert failed.results[1].verdict == FAIL and "suite FAIL" in suite.table(failed)[-1]
    assert suite.exit_status([]) == 1
    assert suite.exit_status(fake_suite({"steady": "ERROR"}).results) == 1
    text = suite.summary_markdown(outcome, "python -m loadtest.chaos all --ci")
    assert text.startswith("# Chaos suite (CI versions)") and "| link | sqlite | PASS" in text


def test_a_run_that_cannot_be_made_is_a_skip_except_under_ci() -> None:
    relaxed = fake_suite({"db-outage": PASS, "steady": PASS}, unsupported={"db-outage"})
    assert [r.verdict for r in relaxed.results] == [SKIP, PASS]
    assert relaxed.results[0].reason == "needs root"
    assert suite.exit_status(relaxed.results) == 0
    strict = fake_suite({"db-outage": PASS, "steady": PASS}, unsupported={"db-outage"},
                        ci_strict=True)
    assert strict.results[0].verdict == FAIL and "CI=true" in strict.results[0].reason
    assert suite.exit_status(strict.results) == 1


def test_runs_past_the_suite_bound_are_not_run_and_fail() -> None:
    outcome = fake_suite({"a": PASS, "b": PASS}, max_total_s=suite.MIN_RUN_S - 1)
    assert [r.verdict for r in outcome.results] == [NOT_RUN, NOT_RUN]
    assert suite.exit_status(outcome.results) == 1


@pytest.mark.slow
def test_the_suite_runner_on_real_runs(tmp_path: Path) -> None:
    """A run as its own process: its verdict and report come back; one that breaks
    before a verdict is an ERROR with the reason."""
    runner = suite.subprocess_runner(ci=True, out_dir=tmp_path, log=lambda _line: None)
    passed = runner(SuiteRun("steady", "sqlite"), 120.0)
    assert passed.verdict == PASS, passed
    assert Path(passed.report).is_file() and passed.seconds > 10
    broken = runner(SuiteRun("no-such-scenario", "sqlite"), 60.0)
    assert broken.verdict == "ERROR" and "exit status 2" in broken.reason


def test_the_command_lists_the_suite() -> None:
    listed = subprocess.run([sys.executable, "-m", "loadtest.chaos", "all", "--list"],
                            capture_output=True, text=True, timeout=60, env=dict(os.environ),
                            check=False)
    assert listed.returncode == 0, listed.stderr
    assert "switch-kill --switches 2 --repeat 3" in listed.stdout
    assert "serial-noise" in listed.stdout and "mqtt-flood" in listed.stdout
