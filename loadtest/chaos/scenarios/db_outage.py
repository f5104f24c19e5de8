"""``db-outage`` (FAILURES F14): the database goes away under load, then comes back.

PostgreSQL: the harness's own cluster is stopped with ``pg_ctl stop -m fast``, kept
down ``outage_s`` (default 10 s), started again; the window ends when ``pg_isready``
first succeeds.  SQLite: the database's tmpfs is filled (SQLITE_FULL on the next
write) for ``outage_s``, then freed.

Promised: RC 91 within 2 s of the stop (SQLite: of the disk filling; its writes fail
at the commit, and SQLite's SQLITE_FULL says the commit did not land, so the switch
answers 91 rather than closing, HOST_SPEC §5), no request waiting past the EDC
time-out, approvals again within 5 s of the database accepting connections (SQLite:
of the disk freed).
"""

from __future__ import annotations

from ..config import RunConfig
from ..context import Acceptance, FaultContext
from ..metrics import Figures
from ..sqlite_volume import unavailable
from . import Scenario, recovered_within, register

FIRST_REACTION_LIMIT_S = 2.0
RECOVERY_LIMIT_S = 5.0
READY_TIMEOUT_S = 60.0


@register
class DbOutage(Scenario):
    name = "db-outage"
    summary = ("PostgreSQL: pg_ctl stop -m fast for outage_s (10 s), then start; SQLite: "
               "the database's tmpfs full for outage_s")
    sqlite_on_tmpfs = True
    ci_params = {"outage_s": "6"}

    def unsupported(self, cfg: RunConfig) -> str | None:
        return super().unsupported(cfg) or (unavailable() if cfg.engine == "sqlite" else None)

    def inject(self, ctx: FaultContext) -> None:
        outage_s = ctx.cfg.param_s("outage_s", 10.0)
        ctx.wait_until(self.fault_at_s(ctx))
        if ctx.postgres is not None:
            pg = ctx.postgres
            with ctx.fault("database down"):
                pg.stop("fast")
                ctx.mark("pg_ctl stop -m fast returned")
                ctx.sleep(outage_s)
                pg.start(wait=False)
                ctx.mark("pg_ctl start issued")
                if not pg.wait_ready(READY_TIMEOUT_S):
                    raise RuntimeError(f"PostgreSQL not ready {READY_TIMEOUT_S:g} s after start")
                ctx.mark("pg_isready succeeds")
            return
        assert ctx.volume is not None and ctx.sqlite_path is not None
        with ctx.fault("disk full"):
            written = ctx.volume.fill(ctx.sqlite_path)
            ctx.mark("tmpfs full", f"{written} bytes of filler")
            ctx.sleep(outage_s)
            ctx.volume.free()
            ctx.mark("filler removed")

    def acceptance(self, cfg: RunConfig, fig: Figures) -> list[Acceptance]:
        checks = []
        stopped = "the stop" if cfg.engine == "postgresql" else "the disk filling"
        for n, w in enumerate(fig.windows, 1):
            checks.append(Acceptance(
                f"window {n}: RC 91 (signed) within {FIRST_REACTION_LIMIT_S:g} s of {stopped}",
                w.first_91_s is not None and w.first_91_s <= FIRST_REACTION_LIMIT_S,
                "no 91" if w.first_91_s is None else f"{w.first_91_s:.2f} s"))
        timeout_ms = cfg.timeout_s * 1e3
        longest = max((w.max_wait_ms for w in fig.windows), default=0.0)
        checks.append(Acceptance(
            f"no request waited past the EDC time-out ({cfg.timeout_s:g} s)",
            fig.timeouts == 0 and longest < timeout_ms,
            f"{fig.timeouts} time-outs; longest wait in the fault {longest:.0f} ms"))
        after = "pg_isready succeeding" if cfg.engine == "postgresql" else "the disk freed"
        return checks + recovered_within(fig, RECOVERY_LIMIT_S, after)
