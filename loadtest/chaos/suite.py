"""``python -m loadtest.chaos all [--ci]`` (``make chaos``): every registered scenario on
each engine it supports, plus ``switch-kill --switches 2 --repeat 3``; a summary table.

Each run is its own ``python -m loadtest.chaos SCENARIO ...`` process (in a session
of its own, so one run's leftovers cannot touch the next, and Ctrl-C reaches the suite
alone, which passes SIGTERM on to the run in progress: that unwinds it and stops
everything it started).  Runs go one after the other, so the figures of one are not
the load of another.

A run that cannot be made here (e.g. db-outage on SQLite without root for its tmpfs,
no mosquitto) is skipped with the reason, except under ``CI=true``, where it is a
failure.  The whole suite is bounded (``--max-total-s``: 15 minutes, 7 with ``--ci``);
a run gets at most what is left of it, and the runs there was no time for count as
failures.  The table (scenario, engine, verdict, seconds, report) is printed and
written to ``<out>/summary.md``.  Exit status 0 only when every run passed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from types import FrameType

from .config import OUT_DIR, RunConfig
from .scenarios import Scenario, load_all

#: The suite's bound (seconds), full and ``--ci``.
MAX_TOTAL_S = 900.0
MAX_TOTAL_CI_S = 420.0
#: A run's own bound: at most this, and never more than what is left of the suite's.
RUN_MAX_S = 300.0
#: Less than this left of the suite: the remaining runs are not started.
MIN_RUN_S = 30.0
#: After its --max-total-s, a run that has not ended gets SIGTERM, then SIGKILL.
OVERRUN_GRACE_S = 30.0
KILL_WAIT_S = 10.0

PASS, FAIL, SKIP, ERROR, NOT_RUN = "PASS", "FAIL", "SKIP", "ERROR", "NOT RUN"


@dataclass(frozen=True)
class SuiteRun:
    """One line of the suite: a scenario on an engine (and its switch options)."""

    scenario: str
    engine: str
    switches: int = 1
    repeat: int = 1

    @property
    def label(self) -> str:
        extra = "" if self.switches == 1 else f" --switches {self.switches}"
        extra += "" if self.repeat == 1 else f" --repeat {self.repeat}"
        return self.scenario + extra

    def argv(self, *, ci: bool, out: Path, max_total_s: float, result_json: Path) -> list[str]:
        return [sys.executable, "-m", "loadtest.chaos", self.scenario, "--engine", self.engine,
                "--switches", str(self.switches), "--repeat", str(self.repeat),
                "--out", str(out), "--max-total-s", f"{max_total_s:.0f}",
                "--result-json", str(result_json), *(["--ci"] if ci else [])]

    def config(self, *, ci: bool, out: Path) -> RunConfig:
        return RunConfig(self.scenario, self.engine, self.switches, repeat=self.repeat,
                         ci=ci, out=out)


@dataclass
class SuiteResult:
    run: SuiteRun
    verdict: str
    seconds: float = 0.0
    report: str = ""
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.verdict == PASS


@dataclass
class SuiteOutcome:
    results: list[SuiteResult] = field(default_factory=list)
    seconds: float = 0.0
    ci: bool = False


def plan(scenarios: dict[str, Scenario]) -> list[SuiteRun]:
    """Every scenario of the suite (by name) on each engine it supports; after
    switch-kill, its two-switch, three-kill version."""
    runs: list[SuiteRun] = []
    for name in sorted(n for n, s in scenarios.items() if s.in_suite):
        runs += [SuiteRun(name, engine) for engine in scenarios[name].engines]
        if name == "switch-kill":
            runs.append(SuiteRun(name, "sqlite", switches=2, repeat=3))
    return runs


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skipped(run: SuiteRun, reason: str, *, ci: bool) -> SuiteResult:
    """A run that cannot be made here: a skip, or under CI=true a failure."""
    if ci:
        return SuiteResult(run, FAIL, reason=f"cannot run here (CI=true: required): {reason}")
    return SuiteResult(run, SKIP, reason=reason)


def exit_status(results: Sequence[SuiteResult]) -> int:
    """0 when every run passed or was skipped (never under CI=true: a skip there is
    already a FAIL), 1 otherwise; no runs at all is a failure too."""
    if not results:
        return 1
    return 0 if all(r.verdict in (PASS, SKIP) for r in results) else 1


def table(outcome: SuiteOutcome) -> list[str]:
    """The summary as markdown lines."""
    results = outcome.results
    counts = {word: sum(r.verdict == word for r in results)
              for word in (PASS, FAIL, ERROR, SKIP, NOT_RUN)}
    lines = ["| scenario | engine | verdict | seconds | report |", "|---|---|---|---|---|"]
    for r in results:
        verdict = r.verdict if not r.reason else f"{r.verdict} ({r.reason})"
        lines.append(f"| {r.run.label} | {r.run.engine} | {verdict} | {r.seconds:.0f} | "
                     f"{r.report or '-'} |")
    said = ", ".join(f"{n} {word}" for word, n in counts.items() if n)
    lines += ["", f"{len(results)} runs in {outcome.seconds:.0f} s "
                  f"({outcome.seconds / 60:.1f} min): {said or 'none'}; "
                  f"suite {'PASS' if exit_status(results) == 0 else 'FAIL'}"]
    return lines


def summary_markdown(outcome: SuiteOutcome, command: str) -> str:
    lines = [f"# Chaos suite{' (CI versions)' if outcome.ci else ''}", "",
             f"`{command}`, {datetime.now():%Y-%m-%d %H:%M}.", "", *table(outcome)]
    return "\n".join(lines) + "\n"


Runner = Callable[[SuiteRun, float], SuiteResult]


def run_suite(runs: Sequence[SuiteRun], *, ci: bool, max_total_s: float, runner: Runner,
              unsupported: Callable[[SuiteRun], str | None],
              out: Callable[[str], None] = print, ci_strict: bool | None = None
              ) -> SuiteOutcome:
    """Each run in turn, within the suite's bound (``runner(run, max_s)`` makes one)."""
    strict = in_ci() if ci_strict is None else ci_strict
    outcome = SuiteOutcome(ci=ci)
    started = time.monotonic()
    for n, run in enumerate(runs, 1):
        left_s = max_total_s - (time.monotonic() - started)
        reason = unsupported(run)
        if reason is not None:
            result = skipped(run, reason, ci=strict)
        elif left_s < MIN_RUN_S:
            result = SuiteResult(run, NOT_RUN, reason=f"the suite's {max_total_s:.0f} s "
                                                      "bound ran out")
        else:
            out(f"[{n}/{len(runs)}] {run.label} on {run.engine} ...")
            result = runner(run, min(RUN_MAX_S, left_s))
        outcome.results.append(result)
        out(f"[{n}/{len(runs)}] {run.label} on {run.engine}: {result.verdict} "
            f"{result.seconds:.0f} s {result.reason}".rstrip())
    outcome.seconds = time.monotonic() - started
    return outcome


def subprocess_runner(*, ci: bool, out_dir: Path, log: Callable[[str], None]) -> Runner:
    """Runs each as ``python -m loadtest.chaos ...`` (its output into the suite's)."""

    def run_one(run: SuiteRun, max_s: float) -> SuiteResult:
        result_json = out_dir / f".result-{run.scenario}-{run.engine}-{run.switches}-" \
                                f"{run.repeat}-{os.getpid()}.json"
        result_json.unlink(missing_ok=True)
        argv = run.argv(ci=ci, out=out_dir, max_total_s=max_s, result_json=result_json)
        started = time.monotonic()
        proc = subprocess.Popen(argv, start_new_session=True)
        try:
            code = _wait(proc, max_s + OVERRUN_GRACE_S, log)
        except BaseException:
            _end(proc)  # Ctrl-C, SIGTERM: the run unwinds and stops what it started
            raise
        seconds = time.monotonic() - started
        try:
            record = json.loads(result_json.read_text(encoding="utf-8"))
            result_json.unlink()
        except (OSError, ValueError):
            record = {}
        verdict = record.get("verdict")
        report = str(record.get("report", ""))
        if verdict in (PASS, FAIL) and code in (0, 1):
            return SuiteResult(run, verdict, seconds, report)
        reason = str(record.get("reason") or f"exit status {code}, no verdict")
        return SuiteResult(run, ERROR, seconds, report, reason[:200])

    return run_one


def _wait(proc: subprocess.Popen[bytes], timeout_s: float, log: Callable[[str], None]) -> int:
    try:
        return proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        log(f"run pid {proc.pid} still going {timeout_s:.0f} s on: SIGTERM")
        return _end(proc)


def _end(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM (the run unwinds), then SIGKILL of its session's group, by its PID."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(OVERRUN_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # its own group: start_new_session
            proc.wait(KILL_WAIT_S)
    return proc.returncode


def scenario_unsupported(scenarios: dict[str, Scenario], *, ci: bool, out: Path
                         ) -> Callable[[SuiteRun], str | None]:
    from .cli import ci_config, full_config

    def reason(run: SuiteRun) -> str | None:
        scenario = scenarios[run.scenario]
        cfg = run.config(ci=ci, out=out)
        cfg = ci_config(cfg, scenario) if ci else full_config(cfg, scenario)
        return scenario.unsupported(replace(cfg, switches=run.switches, repeat=run.repeat))

    return reason


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.chaos all",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--ci", action="store_true", help="the short version of every run")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument("--max-total-s", type=float,
                        help=f"bound of the whole suite (default {MAX_TOTAL_S:.0f}, "
                             f"--ci {MAX_TOTAL_CI_S:.0f})")
    parser.add_argument("--only", metavar="NAME,NAME",
                        help="only these scenarios (the summary logic is the same)")
    parser.add_argument("--list", action="store_true", help="the runs, and exit")
    ns = parser.parse_args(argv)
    scenarios = load_all()
    runs = plan(scenarios)
    if ns.only:
        wanted = set(ns.only.split(","))
        unknown = wanted - set(scenarios)
        if unknown:
            parser.error(f"no scenario {', '.join(sorted(unknown))}")
        runs = [r for r in runs if r.scenario in wanted]
    if ns.list:
        for run in runs:
            print(f"{run.label:40} {run.engine}")
        return 0
    max_total_s = ns.max_total_s or (MAX_TOTAL_CI_S if ns.ci else MAX_TOTAL_S)
    ns.out.mkdir(parents=True, exist_ok=True)
    command = "python -m loadtest.chaos all" + (" --ci" if ns.ci else "") + \
        (f" --only {ns.only}" if ns.only else "")
    print(f"chaos suite: {len(runs)} runs{' (CI versions)' if ns.ci else ''}, bounded by "
          f"{max_total_s:.0f} s; reports in {ns.out}")
    old_term = signal.signal(signal.SIGTERM, _interrupt)  # passed on to the run in progress
    try:
        outcome = run_suite(runs, ci=ns.ci, max_total_s=max_total_s,
                            runner=subprocess_runner(ci=ns.ci, out_dir=ns.out, log=print),
                            unsupported=scenario_unsupported(scenarios, ci=ns.ci, out=ns.out))
    except KeyboardInterrupt:
        print("chaos suite interrupted; the run in progress was stopped", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, old_term)
    text = summary_markdown(outcome, command)
    (ns.out / "summary.md").write_text(text, encoding="utf-8")
    print("\n" + "\n".join(table(outcome)))
    print(f"summary: {ns.out / 'summary.md'}")
    return exit_status(outcome.results)
