"""``pg-failover`` (issue 17, FAILURES F14): the database's primary dies under load and
its synchronous standby is promoted (loadtest/pg_standby.py, docs/SCALING.md).

Before the switches start, the harness's seeded cluster is copied (``pg_basebackup``)
into a primary of a :class:`~loadtest.pg_standby.StandbyPair`, with a synchronous
standby (``synchronous_standby_names``, ``synchronous_commit=on``) streaming from it;
both switches get the pair's multi-host URL (``target_session_attrs=read-write``) and
the harness reads the ledger through it after the run: from the promoted standby.
At ``at`` (30 %) the primary is killed as a crashed machine would be (SIGKILL of the
postmaster and every backend at once); ``promote_after_s`` (2 s; CI 1 s) later the
scripted promotion (``pg_ctl promote -w``).  The fault window spans kill -> promoted.

Two switches: the deployment runs several on one database (docs/SCALING.md), and each
one's connection pool has to find the new primary by itself.

Promised: a signed RC 91 within 2 s of the kill; no unsigned 91 in the whole run;
approvals again within 5 s of the promotion; the standby was ``sync`` when the
primary died, and the ledger the checker read came from the promoted standby.  The
checker's terminal history (approval-is-one-debit, debit-seen-approved) is the
promise that no approval a terminal saw is missing afterwards.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from loadtest.pg_standby import STANDBY, StandbyPair, unavailable
from switch.protocol import codes

from ..config import RunConfig
from ..context import Acceptance, FaultContext
from ..history import ANSWERED, NOT_SENT, PURCHASE, Exchange
from ..metrics import Figures
from . import Scenario, recovered_within, register

FIRST_91_LIMIT_S = 2.0
RESUME_LIMIT_S = 5.0
#: What the switch logs when it answers 91 (nothing committed) and when a commit
#: raised (it may have landed: no answer, the terminal's reversal settles it).
UNAVAILABLE_LOG = "ledger unavailable for a batch of"
COMMIT_FAILED_LOG = re.compile(r"the commit of a batch of (\d+) failed")
LANDED = "on the standby (committed there; its reversal refunded it)"
NOT_LANDED = "not on the standby (its reversal found nothing to undo)"


@dataclass
class _Seen:
    ports: tuple[int, int] | None = None
    pids: dict[str, int | None] = field(default_factory=dict)
    sync_at_kill: list[tuple[str, str, str]] = field(default_factory=list)
    hold_s: float | None = None
    kill_s: float | None = None
    promoted_s: float | None = None
    promote_took_s: float | None = None
    ledger_port: int | None = None
    unavailable_lines: int = 0
    commit_failed_lines: int = 0
    commit_failed_requests: int = 0
    #: purchases in flight at the kill (sent before it, no answer): key -> whether the
    #: promoted standby holds its debit (committed there, so its reversal refunded it)
    in_flight: dict[str, bool] = field(default_factory=dict)


@register
class PgFailover(Scenario):
    name = "pg-failover"
    summary = ("PostgreSQL primary + synchronous standby; at 30 % the standby held hold_s "
               "(1 s: a commit in flight), the primary killed (SIGKILL), promote_after_s "
               "(2 s) later the standby promoted; 2 switches on the multi-host URL")
    engines = ("postgresql",)
    #: Run on its own and by tests/loadtest/test_pg_standby.py: with it, ``all`` would
    #: pass the 15-minute bound of ``make chaos`` (13 runs took 787 s before
    #: haproxy-kill; this one adds about 80 s with its two clusters).
    in_suite = False
    ci_params = {"promote_after_s": "1"}

    def __init__(self) -> None:
        self.pair: StandbyPair | None = None
        self.seen = _Seen()
        self._log_dir: Path | None = None

    def configure(self, cfg: RunConfig) -> RunConfig:
        return replace(cfg, switches=2)

    def unsupported(self, cfg: RunConfig) -> str | None:
        return super().unsupported(cfg) or unavailable()

    def before_switches(self, ctx: FaultContext) -> None:
        assert ctx.postgres is not None, "pg-failover runs on PostgreSQL"
        from ..postgres import DATABASE

        pair = ctx.stack.enter_context(StandbyPair(source=ctx.postgres, database=DATABASE))
        self.pair = pair
        # the switches and the harness's ledger read after the run: the pair, not the
        # harness's own cluster (which only seeded it, and is left alone)
        ctx.switches.db_url = ctx.db_url = pair.url
        self.seen.ports = (pair.primary.port, pair.standby.port)
        self.seen.pids = pair.pids()
        ctx.mark("primary + synchronous standby",
                 f"primary :{pair.primary.port} pid {self.seen.pids.get('bpnt_primary')}, "
                 f"standby :{pair.standby.port} pid {self.seen.pids.get(STANDBY)}; "
                 + ", ".join("/".join(r) for r in pair.replication()))

    def inject(self, ctx: FaultContext) -> None:
        pair, seen = self.pair, self.seen
        assert pair is not None
        ctx.wait_until(self.fault_at_s(ctx))
        seen.sync_at_kill = pair.replication()
        hold_s = ctx.cfg.param_s("hold_s", 1.0)
        if hold_s > 0:
            held = pair.hold_standby()
            seen.hold_s = ctx.now_s()
            ctx.mark("standby's walreceiver stopped (SIGSTOP)",
                     f"pid {held}: commits on the primary wait for it; kill in {hold_s:g} s")
            ctx.sleep(hold_s)
        with ctx.fault("primary killed, standby promoted"):
            pid = pair.kill_primary()
            seen.kill_s = ctx.now_s()
            ctx.mark("kill -9 the primary", f"postmaster pid {pid} and its backends")
            if hold_s > 0:
                pair.release_standby()
                ctx.mark("standby's walreceiver continued (SIGCONT)")
            ctx.sleep(ctx.cfg.param_s("promote_after_s", 2.0))
            ctx.mark("pg_ctl promote")
            seen.promote_took_s = pair.promote()
            seen.promoted_s = ctx.now_s()
            ctx.mark("standby promoted", f"pg_ctl promote -w took {seen.promote_took_s:.2f} s")
        ctx.wait_until(ctx.load_end_s)

    def judge(self, cfg: RunConfig, fig: Figures,
              exchanges: Sequence[Exchange]) -> list[Acceptance]:
        pair, seen = self.pair, self.seen
        if pair is not None:
            seen.ledger_port = pair.writable_port()
        self._read_logs(cfg)
        self._in_flight(exchanges)
        checks = [Acceptance("the standby was the synchronous one when the primary died",
                             (STANDBY, "streaming", "sync") in seen.sync_at_kill,
                             ", ".join("/".join(r) for r in seen.sync_at_kill) or "-")]
        window = fig.windows[0] if fig.windows else None
        first = None if window is None else window.first_91_s
        checks.append(Acceptance(f"RC 91 (signed) within {FIRST_91_LIMIT_S:g} s of the kill",
                                 first is not None and first <= FIRST_91_LIMIT_S,
                                 "no signed 91" if first is None else f"{first:.2f} s"))
        unsigned = [e for e in exchanges if e.outcome == ANSWERED
                    and e.rc == codes.HOST_UNAVAILABLE and not e.signed]
        signed = sum(e.outcome == ANSWERED and e.rc == codes.HOST_UNAVAILABLE and e.signed
                     for e in exchanges)
        checks.append(Acceptance("every 91 signed (DE 64)", not unsigned and signed > 0,
                                 f"{signed} signed, {len(unsigned)} unsigned"))
        checks += recovered_within(fig, RESUME_LIMIT_S, "the promotion")
        standby_port = None if seen.ports is None else seen.ports[1]
        checks.append(Acceptance("the ledger checked is the promoted standby's "
                                 "(the multi-host URL reaches it)",
                                 seen.ledger_port is not None
                                 and seen.ledger_port == standby_port,
                                 f"port {seen.ledger_port} (standby :{standby_port})"))
        return checks

    def _read_logs(self, cfg: RunConfig) -> None:
        """Count the switches' 91s and failed commits (the in-flight case) in their logs."""
        seen = self.seen
        seen.unavailable_lines = seen.commit_failed_lines = seen.commit_failed_requests = 0
        if self._log_dir is None:
            return
        for index in range(cfg.switches):
            path = self._log_dir / f"switch-{index}.log"
            if not path.exists():
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            seen.unavailable_lines += text.count(UNAVAILABLE_LOG)
            for match in COMMIT_FAILED_LOG.finditer(text):
                seen.commit_failed_lines += 1
                seen.commit_failed_requests += int(match.group(1))

    def _in_flight(self, exchanges: Sequence[Exchange]) -> None:
        """Which unanswered purchases of the kill's moment reached the standby."""
        seen, pair = self.seen, self.pair
        if pair is None or seen.kill_s is None or seen.promoted_s is None:
            return
        since = seen.hold_s if seen.hold_s is not None else seen.kill_s
        keys = [e.key for e in exchanges if e.op == PURCHASE and e.outcome != ANSWERED
                and e.outcome != NOT_SENT and e.sent_s <= seen.kill_s and e.done_s >= since]
        for key in keys:
            tid, local_date, stan = key.split("/")
            rows = pair.standby.query(
                "SELECT count(*) FROM request_records WHERE kind = 'request' AND "
                f"transfer_id IS NOT NULL AND tid = '{tid}' AND local_date = '{local_date}' "
                f"AND stan = '{stan}'", dbname=pair.database)
            seen.in_flight[key] = bool(rows and rows[0][0])

    def setup(self, ctx: FaultContext) -> None:
        self._log_dir = ctx.switches.log_dir

    def report_section(self, cfg: RunConfig, fig: Figures,
                       exchanges: Sequence[Exchange]) -> list[str]:
        seen = self.seen
        lines = ["## The failover", ""]
        if seen.ports is not None:
            lines += [f"Primary on 127.0.0.1:{seen.ports[0]} (postmaster pid "
                      f"{seen.pids.get('bpnt_primary')}), synchronous standby "
                      f"`{STANDBY}` on 127.0.0.1:{seen.ports[1]} (pid {seen.pids.get(STANDBY)}); "
                      f"the switches' URL `{self.pair.url if self.pair else '-'}`.", ""]
        lines += ["| step | run second | |", "|---|---|---|",
                  f"| primary killed (SIGKILL) | {_s(seen.kill_s)} | standby at the kill: "
                  f"{', '.join('/'.join(r) for r in seen.sync_at_kill) or '-'} |",
                  f"| standby promoted | {_s(seen.promoted_s)} | `pg_ctl promote -w` took "
                  f"{_s(seen.promote_took_s)} |", ""]
        lines += [f"The switches logged {seen.unavailable_lines} batches answered 91 (ledger "
                  f"unavailable: nothing committed) and {seen.commit_failed_lines} failed "
                  f"commits ({seen.commit_failed_requests} requests closed without an answer: "
                  "their commit may have reached the standby; the terminals' reversals settle "
                  f"them). After the run the URL reached port {seen.ledger_port}.", "",
                  f"Purchases in flight at the kill (sent before it, never answered): "
                  f"{len(seen.in_flight)}"
                  + "".join(f"; `{key}` {LANDED if on else NOT_LANDED}"
                            for key, on in seen.in_flight.items()) + "."]
        return lines

    def summary_lines(self) -> list[str]:
        seen = self.seen
        took = "-" if seen.promote_took_s is None else f"{seen.promote_took_s:.2f} s"
        return [f"failover: primary killed at {_s(seen.kill_s)}, standby promoted at "
                f"{_s(seen.promoted_s)} (pg_ctl promote {took}); switches logged "
                f"{seen.unavailable_lines} batches answered 91, {seen.commit_failed_lines} "
                f"failed commits ({seen.commit_failed_requests} requests closed); in flight "
                f"at the kill {len(seen.in_flight)}, "
                f"{sum(seen.in_flight.values())} of them on the standby; ledger "
                f"read from port {seen.ledger_port}"]


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"
