"""The scenarios, one module each, and their registry.

A scenario is a :class:`Scenario` subclass decorated with :func:`register` in a module
of this package; :func:`load_all` imports every module here, so adding a scenario is
adding a file (the harness never names one).  A scenario says which engines it runs
on, what the short CI version changes (``ci_params``), what it needs before the
switches start (``before_switches``: a broker, switch settings) and before the load
(``setup``: e.g. a fault proxy, with ``ctx.connect`` routing the terminals through it
and ``ctx.stack`` for its clean-up), what it does while the load runs
(``inject``, on the harness's main thread, on the run clock), and what it promises
(``acceptance``, judged from the figures; the checker's verdict is separate) and what
its report says besides the common figures (``report_section``).  Each run gets a
fresh instance (:meth:`Scenario.fresh`), so a scenario may keep the run's state
(a broker, a proxy, its phases) on ``self``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Sequence
from typing import ClassVar

from ..config import RunConfig
from ..context import Acceptance, FaultContext
from ..history import Exchange
from ..metrics import Figures

#: Where in the load the fault begins, as a fraction of it (``--param at=0.3``).
DEFAULT_AT = 0.3


class Scenario:
    name: ClassVar[str]
    summary: ClassVar[str]
    engines: ClassVar[tuple[str, ...]] = ("sqlite", "postgresql")
    #: Part of ``all`` (``make chaos``); False for a scenario run on its own (and by its
    #: own CI test), to keep the suite within its bound (suite.MAX_TOTAL_S).
    in_suite: ClassVar[bool] = True
    #: The SQLite database lives on a small tmpfs the scenario may fill.
    sqlite_on_tmpfs: ClassVar[bool] = False
    #: The full version's run settings where they differ from the harness's defaults
    #: (duration_s, rate_per_s, terminals, timeout_s, settle_s, purchases) ...
    full_settings: ClassVar[dict[str, float]] = {}
    #: ``--ci``: the run's settings (as above, over cli.CI_SETTINGS) ...
    ci_settings: ClassVar[dict[str, float]] = {}
    #: ... and the scenario's own parameters.
    ci_params: ClassVar[dict[str, str]] = {}

    def fresh(self) -> Scenario:
        """A new instance for one run (state kept on ``self`` is that run's)."""
        return type(self)()

    def configure(self, cfg: RunConfig) -> RunConfig:
        """The run's settings as this scenario needs them (e.g. one switch process per
        serial line); by default as given."""
        return cfg

    def unsupported(self, cfg: RunConfig) -> str | None:
        """Why this scenario cannot run with ``cfg`` here (None: it can)."""
        if cfg.engine not in self.engines:
            return f"{self.name} runs on {', '.join(self.engines)}, not {cfg.engine}"
        return None

    def before_switches(self, ctx: FaultContext) -> None:
        """Before the switches start: start what they need (a broker, with its clean-up
        on ``ctx.stack``: it runs after the switches stop) and put their extra
        ``BPNT_*`` settings in ``ctx.switches.extra_env``."""

    def setup(self, ctx: FaultContext) -> None:
        """After the switches are up and the terminals logged on (over TCP), before the
        load: e.g. start a fault proxy (clean-up on ``ctx.stack``) and route the
        terminals through it (``ctx.connect``)."""

    def inject(self, ctx: FaultContext) -> None:
        raise NotImplementedError

    def acceptance(self, cfg: RunConfig, fig: Figures) -> list[Acceptance]:
        return []

    def judge(self, cfg: RunConfig, fig: Figures,
              exchanges: Sequence[Exchange]) -> list[Acceptance]:
        """The promises, measured; by default :meth:`acceptance` (from the figures);
        a scenario that needs the exchanges themselves overrides this."""
        return self.acceptance(cfg, fig)

    def report_section(self, cfg: RunConfig, fig: Figures,
                       exchanges: Sequence[Exchange]) -> list[str]:
        """Markdown lines of the scenario's own figures for report.md (after the
        common ones; e.g. a phase table), or none."""
        return []

    def summary_lines(self) -> list[str]:
        """The gist of :meth:`report_section` for the console (after it has run)."""
        return []

    @staticmethod
    def fault_at_s(ctx: FaultContext) -> float:
        return ctx.at_fraction(float(ctx.cfg.params.get("at", DEFAULT_AT)))


SCENARIOS: dict[str, Scenario] = {}


def register(cls: type[Scenario]) -> type[Scenario]:
    assert cls.name not in SCENARIOS, f"two scenarios named {cls.name}"
    SCENARIOS[cls.name] = cls()
    return cls


def load_all() -> dict[str, Scenario]:
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    return SCENARIOS


def get(name: str) -> Scenario:
    scenarios = load_all()
    if name not in scenarios:
        raise KeyError(f"no scenario {name!r}; there are: {', '.join(sorted(scenarios))}")
    return scenarios[name]


def recovered_within(fig: Figures, limit_s: float, after: str) -> list[Acceptance]:
    """Per fault window: an approval again within ``limit_s`` of its end."""
    checks = []
    for n, w in enumerate(fig.windows, 1):
        ok = w.recovery_s is not None and w.recovery_s <= limit_s
        measured = "no approval after it" if w.recovery_s is None else f"{w.recovery_s:.2f} s"
        checks.append(Acceptance(f"window {n}: approvals again within {limit_s:g} s of "
                                 f"{after}", ok, measured))
    return checks
