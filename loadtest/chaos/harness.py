"""One chaos run, start to verdict, and its timeline.

1. the database: SQLite (on a small tmpfs when the scenario breaks the disk) or the
   harness's own PostgreSQL cluster (:mod:`.postgres`); seeded as the bench seeds
   (:func:`loadtest.bench.seed`: the demo catalogue and terminals, KPM through the
   importer, this period's allocation);
2. the scenario's ``before_switches`` (what the switches need: a broker, settings),
   ``--switches`` switch processes (:mod:`.switches`); every terminal logs on
   (:func:`loadtest.bench.logged_on_edcs`); the scenario's ``setup``;
3. the fleet's load (:mod:`.load`) from run second ``load_start_s`` for
   ``duration_s`` (a closed loop of ``purchases``: until they are done, at most that
   long); meanwhile, on this thread, the scenario's ``inject`` (the fault);
4. once ``inject`` has returned (the fault is gone) and the load is over, the
   terminals deliver their pending reversals, for at most ``settle_s``;
5. the switches stopped, the database read (:mod:`.ledger_rows`), the verdict
   (:mod:`.checker`), the figures and the scenario's acceptance; the report.

Everything started is stopped on the way out, by PID, whatever happens (an
``ExitStack``; Ctrl-C and SIGTERM unwind it, ``--max-total-s`` too).
"""

from __future__ import annotations

import math
import sqlite3
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from loadtest.bench import BASKET, BenchCard, logged_on_edcs, parse_args, seed
from loadtest.bench import Args as BenchArgs
from switch.db.schema import open_database
from switch.security.keyring import Keyring
from switch.settings import load_settings
from terminal_sim.demo import fresh_sqlite

from .checker import Verdict, check
from .config import RunConfig
from .context import Acceptance, FaultContext
from .history import History
from .ledger_rows import read_ledger_rows
from .load import FleetLoad, LoadPlan, build_fleet
from .metrics import Figures, figures
from .postgres import OwnCluster
from .report import write_report
from .scenarios import Scenario
from .sqlite_volume import TmpfsVolume
from .switches import SwitchFleet

#: Purchases a wallet pays for (Rp 200.000 / Rp 5.000), used to this fraction at most.
PURCHASES_PER_CARD = 40
CARD_USE = 0.75
#: The tmpfs for the SQLite database: the seeded world and a run's growth fit easily.
TMPFS_MB = 96
LOAD_START_DELAY_S = 0.5


class ScenarioUnsupported(Exception):
    """The scenario cannot run with these settings here (the reason says why)."""


@dataclass
class RunResult:
    scenario: str
    cfg: RunConfig
    verdict: Verdict
    figures: Figures
    acceptance: list[Acceptance]
    run_dir: Path
    notes: list[str] = field(default_factory=list)
    #: The scenario's own report lines (markdown: its phases, its counters) ...
    section: list[str] = field(default_factory=list)
    #: ... and the gist of them for the console.
    summary_lines: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.verdict.ok and all(a.ok for a in self.acceptance)


@dataclass
class _Environment:
    ctx: FaultContext
    cards: list[BenchCard]
    bench_args: BenchArgs
    run_dir: Path


def kpm_needed(cfg: RunConfig) -> int:
    purchases = cfg.rate_per_s * cfg.duration_s if cfg.purchases is None else cfg.purchases
    return max(2 * cfg.terminals, math.ceil(purchases / (PURCHASES_PER_CARD * CARD_USE)))


def run(cfg: RunConfig, scenario: Scenario, out: Callable[[str], None] = print) -> RunResult:
    reason = scenario.unsupported(cfg)
    if reason is not None:
        raise ScenarioUnsupported(reason)
    scenario = scenario.fresh()  # its state is this run's
    cfg = scenario.configure(cfg)
    run_dir = cfg.out / f"{scenario.name}-{datetime.now():%Y%m%d-%H%M%S-%f}"
    run_dir.mkdir(parents=True)
    history = History()
    try:
        with ExitStack() as stack:
            env = _environment(cfg, scenario, run_dir, history, stack, out)
            result = _load_and_fault(cfg, scenario, env, stack, out)
            ctx = env.ctx
            if ctx.volume is not None and ctx.sqlite_path is not None:
                _keep_sqlite(ctx.sqlite_path, run_dir / "chaos.db")
    except BaseException:
        history.mark("run broke off")
        history.write_jsonl(run_dir / "history.jsonl")  # what was seen, for the post-mortem
        out(f"run broke off: the history so far is in {run_dir / 'history.jsonl'}")
        raise
    write_report(result, history)
    return result


def _environment(cfg: RunConfig, scenario: Scenario, run_dir: Path, history: History,
                 stack: ExitStack, out: Callable[[str], None]) -> _Environment:
    """The database (seeded), the switches, nothing of the load yet."""
    volume: TmpfsVolume | None = None
    postgres: OwnCluster | None = None
    sqlite_path: Path | None = None
    if cfg.engine == "postgresql":
        postgres = stack.enter_context(OwnCluster())
        url = postgres.url
        out(f"own PostgreSQL cluster on 127.0.0.1:{postgres.port} ({postgres.dir})")
    else:
        if scenario.sqlite_on_tmpfs:
            volume = stack.enter_context(TmpfsVolume(TMPFS_MB))
            sqlite_path = volume.path / "chaos.db"
            out(f"SQLite on a {TMPFS_MB} MB tmpfs at {volume.path}")
        else:
            sqlite_path = run_dir / "chaos.db"
        url = fresh_sqlite(sqlite_path)
    bench_args = parse_args(["--terminals", str(cfg.terminals), "--kpm", str(kpm_needed(cfg))])
    with tempfile.TemporaryDirectory(prefix="bpnt-chaos-seed-") as seed_dir:
        cards = seed(url, bench_args, Path(seed_dir), out)  # its KPM file holds PANs
    switches = SwitchFleet(url, run_dir, cfg.switch_module)
    ctx = FaultContext(cfg, history, switches, url, postgres, volume, sqlite_path)
    stack.callback(ctx.abort.set)
    stack.enter_context(ctx.stack)  # closed after the switches stop (a broker they use)
    scenario.before_switches(ctx)
    stack.callback(switches.stop_all)
    switches.start_all(cfg.switches)
    out(f"switch pid(s) {', '.join(str(s.pid) for s in switches.slots)} on port(s) "
        f"{', '.join(map(str, switches.ports))} ({cfg.switch_module})")
    return _Environment(ctx, cards, bench_args, run_dir)


def _load_and_fault(cfg: RunConfig, scenario: Scenario, env: _Environment, stack: ExitStack,
                    out: Callable[[str], None]) -> RunResult:
    ctx, history = env.ctx, env.ctx.history
    edcs = logged_on_edcs(env.bench_args, ctx.switches.ports)
    scenario.setup(ctx)
    keys = Keyring.from_settings(load_settings())
    fleet = build_fleet(edcs, env.cards, keys.imk_ac, BASKET, history,
                        timeout_s=cfg.timeout_s, connect=ctx.connect)
    start_s = history.clock.now_s() + LOAD_START_DELAY_S
    plan = LoadPlan(cfg.rate_per_s, start_s, start_s + cfg.duration_s,
                    start_s + cfg.duration_s + cfg.settle_s, cfg.purchases)
    ctx.load_start_s, ctx.load_end_s = plan.start_s, plan.end_s
    load = FleetLoad(fleet, plan, history)
    stack.callback(load.stop)
    offered = (f"{cfg.rate_per_s:g} purchases/s for {cfg.duration_s:g} s"
               if cfg.purchases is None else
               f"{cfg.purchases} purchases back to back (at most {cfg.duration_s:g} s)")
    out(f"{scenario.name}: {len(fleet)} terminals, {offered}, EDC time-out "
        f"{cfg.timeout_s:g} s")
    load.start()
    history.mark("load begins", f"purchases offered from {plan.start_s:.2f} s to "
                                f"{plan.end_s:.2f} s" + ("" if cfg.purchases is None else
                                                         f" at most ({cfg.purchases})"))
    scenario.inject(ctx)
    history.mark("fault injection over")
    if cfg.purchases is None:
        ctx.wait_until(plan.end_s)
    elif not load.wait_offered(plan.end_s):
        ctx.notes.append(f"the closed loop's {cfg.purchases} purchases were not all offered "
                         f"within {cfg.duration_s:g} s")
    history.mark("load over; terminals deliver their pending reversals")
    load.allow_settling()
    if not load.join():
        ctx.notes.append("some terminal threads were still busy at the settle deadline")
    history.mark("reversals settled", f"{load.pending} terminals still owe one")
    ctx.notes += ctx.switches.stop_all()
    history.mark("switches stopped")
    db = open_database(ctx.db_url, create=False)
    try:
        rows = read_ledger_rows(db)
    finally:
        db.dispose()
    exchanges = history.snapshot()
    verdict = check(exchanges, rows)
    fig = figures(exchanges, history.windows, history.skips)
    acceptance = scenario.judge(cfg, fig, exchanges)
    section = scenario.report_section(cfg, fig, exchanges)
    return RunResult(scenario.name, cfg, verdict, fig, acceptance, env.run_dir, ctx.notes,
                     section, scenario.summary_lines())


def _keep_sqlite(path: Path, target: Path) -> None:
    """A copy of a database that lives on the tmpfs (which goes with the run)."""
    source = sqlite3.connect(str(path))
    try:
        copy = sqlite3.connect(str(target))
        with copy:
            source.backup(copy)
        copy.close()
    finally:
        source.close()

