"""``python -m loadtest.chaos SCENARIO [options]``: EDC load on running switches, a fault
at set times, then the verdict from the terminals' history against the database.

    python -m loadtest.chaos --list
    python -m loadtest.chaos db-outage --engine postgresql
    python -m loadtest.chaos switch-kill --switches 2 --repeat 3 --duration-s 90
    python -m loadtest.chaos switch-pause --ci
    python -m loadtest.chaos all [--ci]       # every scenario on each engine: loadtest.chaos.suite

Exit status: 0 the checker passed and the scenario's promises were met; 1 either
did not; 2 the scenario cannot run here, or the run broke or ran out of
``--max-total-s``; 130 Ctrl-C.  Everything started is stopped on the way out.
The report goes to ``var/chaos/<scenario>-<timestamp>/`` (docs/CHAOS.md).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields, replace
from pathlib import Path
from types import FrameType
from typing import Any

from .config import OUT_DIR, RunConfig
from .context import ChaosAborted
from .harness import RunResult, ScenarioUnsupported, run
from .scenarios import Scenario, get, load_all

#: ``--ci``: every scenario short (each well under a minute with set-up).
CI_SETTINGS: dict[str, float] = {"duration_s": 20.0, "rate_per_s": 15.0, "terminals": 6,
                                 "settle_s": 15.0, "max_total_s": 150.0}


#: RunConfig fields that are counts.
INTEGER_SETTINGS = ("terminals", "purchases", "repeat")


def _typed(settings: dict[str, float]) -> dict[str, Any]:
    return {name: int(value) if name in INTEGER_SETTINGS else value
            for name, value in settings.items()}


def full_config(cfg: RunConfig, scenario: Scenario) -> RunConfig:
    """The full version: the scenario's own settings (``full_settings``) over the
    harness's defaults; options given explicitly go over this."""
    return replace(cfg, **_typed(scenario.full_settings))


def ci_config(cfg: RunConfig, scenario: Scenario) -> RunConfig:
    """The CI version: short settings and the scenario's CI parameters, under whatever
    was given explicitly (``cfg.params`` wins over ``ci_params``).  The short settings
    (:data:`CI_SETTINGS`, then the scenario's ``ci_settings``) go over its
    ``full_settings`` (which keep what the short version does not change, e.g. a
    serial line's longer time-out)."""
    settings = _typed({**scenario.full_settings, **CI_SETTINGS, **scenario.ci_settings})
    return replace(cfg, ci=True, params={**scenario.ci_params, **cfg.params}, **settings)


def _abort(signum: int, _frame: FrameType | None) -> None:
    raise ChaosAborted(f"signal {signal.Signals(signum).name}"
                       + (": --max-total-s ran out" if signum == signal.SIGALRM else ""))


@contextmanager
def bounded(max_total_s: float) -> Iterator[None]:
    """SIGALRM after ``max_total_s`` and SIGTERM both unwind the run (main thread)."""
    old_alarm = signal.signal(signal.SIGALRM, _abort)
    old_term = signal.signal(signal.SIGTERM, _abort)
    signal.alarm(max(1, int(max_total_s)))
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old_alarm)
        signal.signal(signal.SIGTERM, old_term)


def run_bounded(cfg: RunConfig, out: Callable[[str], None] = print) -> RunResult:
    """The run of ``cfg``, bounded by its ``max_total_s``."""
    with bounded(cfg.max_total_s):
        return run(cfg, get(cfg.scenario), out)


def parse_args(argv: list[str] | None) -> RunConfig | None:
    return parse(argv)[0]


def parse(argv: list[str] | None) -> tuple[RunConfig | None, Path | None]:
    """The run's config (None: ``--list``) and where ``--result-json`` goes."""
    parser = argparse.ArgumentParser(prog="python -m loadtest.chaos",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", nargs="?")
    parser.add_argument("--list", action="store_true", help="the scenarios, and exit")
    parser.add_argument("--engine", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--switches", type=int, choices=[1, 2], default=1)
    parser.add_argument("--duration-s", type=float, help="load duration (default 60)")
    parser.add_argument("--rate", type=float, dest="rate_per_s",
                        help="purchases/s offered by the fleet (default 20)")
    parser.add_argument("--purchases", type=int,
                        help="a closed loop of N purchases in all, back to back, instead "
                             "of the rate (--duration-s bounds it)")
    parser.add_argument("--terminals", type=int, help="EDCs in the fleet (default 8)")
    parser.add_argument("--timeout-s", type=float, help="EDC response time-out (default 5)")
    parser.add_argument("--settle-s", type=float,
                        help="after the load, time for pending reversals (default 30)")
    parser.add_argument("--repeat", type=int, help="switch-kill: kills (default 1)")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a scenario parameter, e.g. outage_s=10, pause_s=8, at=0.3")
    parser.add_argument("--ci", action="store_true", help="the short version (<= ~60 s)")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument("--max-total-s", type=float,
                        help="abort (and clean up) after this long (default 600)")
    parser.add_argument("--switch-module", default="switch.cli",
                        help="python -m MODULE serve is the switch (tests of the harness)")
    parser.add_argument("--result-json", type=Path,
                        help="also write the verdict as JSON here (the `all` suite)")
    ns = parser.parse_args(argv)
    if ns.list:
        return None, None
    if ns.scenario is None:
        parser.error("name a scenario (--list shows them)")
    params = {}
    for item in ns.param:
        name, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--param {item}: NAME=VALUE")
        params[name] = value
    given = {f.name: getattr(ns, f.name) for f in fields(RunConfig)
             if getattr(ns, f.name, None) is not None
             and f.name not in ("scenario", "params", "ci", "engine", "switches", "out",
                                "switch_module")}
    cfg = RunConfig(ns.scenario, ns.engine, ns.switches, params=params, ci=ns.ci,
                    out=ns.out, switch_module=ns.switch_module)
    try:
        scenario = get(ns.scenario)
    except KeyError as exc:
        parser.exit(2, f"chaos: {exc.args[0]}\n")
    cfg = ci_config(cfg, scenario) if ns.ci else full_config(cfg, scenario)
    cfg = replace(cfg, **given)
    if cfg.duration_s <= 0 or cfg.rate_per_s <= 0 or cfg.terminals < 1 or cfg.repeat < 1 \
            or (cfg.purchases is not None and cfg.purchases < 1):
        parser.error("duration, rate, terminals, purchases and repeat must be positive")
    return cfg, ns.result_json


def write_result_json(path: Path, verdict: str, *, result: RunResult | None = None,
                      reason: str = "") -> None:
    """The verdict for the `all` suite: PASS / FAIL / UNSUPPORTED / ERROR / ABORTED."""
    record: dict[str, Any] = {"verdict": verdict, "reason": reason}
    if result is not None:
        record.update(report=str(result.run_dir / "report.md"),
                      run_dir=str(result.run_dir), checker=result.verdict.word,
                      acceptance_met=all(a.ok for a in result.acceptance),
                      purchases=result.figures.purchases, approved=result.figures.approved)
    path.write_text(json.dumps(record, sort_keys=True) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["all"]:
        from .suite import main as suite_main

        return suite_main(args[1:])
    cfg, result_json = parse(args)
    if cfg is None:
        for name, scenario in sorted(load_all().items()):
            print(f"{name:14} {scenario.summary}")
        print(f"{'all':14} every scenario above on each engine it supports, and "
              "switch-kill --switches 2 --repeat 3: the summary table")
        return 0

    def said(verdict: str, reason: str = "", result: RunResult | None = None) -> None:
        if result_json is not None:
            write_result_json(result_json, verdict, result=result, reason=reason)

    try:
        result = run_bounded(cfg)
    except ScenarioUnsupported as exc:
        print(f"chaos: {cfg.scenario} cannot run here: {exc}", file=sys.stderr)
        said("UNSUPPORTED", str(exc))
        return 2
    except ChaosAborted as exc:
        print(f"chaos ABORTED ({exc}); everything it started is stopped", file=sys.stderr)
        said("ABORTED", str(exc))
        return 2
    except KeyError as exc:
        print(f"chaos: {exc.args[0]}", file=sys.stderr)
        said("ERROR", str(exc.args[0]))
        return 2
    except KeyboardInterrupt:
        print("chaos interrupted; everything it started is stopped", file=sys.stderr)
        said("ABORTED", "interrupted")
        return 130
    except Exception as exc:  # the run broke: say where, exit 2 (no verdict)
        traceback.print_exc()
        print("chaos: the run broke (above); everything it started is stopped",
              file=sys.stderr)
        said("ERROR", f"{type(exc).__name__}: {exc}")
        return 2
    print(summary(result))
    said("PASS" if result.ok else "FAIL", result=result)
    return 0 if result.ok else 1


def summary(result: RunResult) -> str:
    fig, verdict = result.figures, result.verdict
    lines = [f"{result.scenario}: {fig.purchases} purchases, {fig.approved} approved, "
             f"RCs {dict(sorted(fig.by_rc.items()))}, not answered "
             f"{dict(sorted(fig.by_outcome.items()))}; reversals "
             f"{dict(sorted(fig.reversals_by_result.items()))}, {fig.reversals_pending} "
             "still pending"]
    for w in fig.windows:
        lines.append(f"  {w.window.label}: {w.window.start_s:.1f}-{w.window.end_s:.1f} s, "
                     f"first 91 {'-' if w.first_91_s is None else f'{w.first_91_s:.2f} s'}, "
                     "recovery "
                     f"{'-' if w.recovery_s is None else f'{w.recovery_s:.2f} s'}")
    lines += [f"  acceptance: {a.name}: {'met' if a.ok else 'NOT MET'} ({a.measured})"
              for a in result.acceptance]
    lines += [f"  {line}" for line in result.summary_lines]
    lines.append(f"checker {verdict.word}: {len(verdict.violations)} violations "
                 f"{dict(verdict.by_rule())}")
    lines += [f"  - {v}" for v in verdict.violations[:10]]
    lines.append(f"VERDICT: {'PASS' if result.ok else 'FAIL'}; report "
                 f"{result.run_dir / 'report.md'}")
    return "\n".join(lines)
