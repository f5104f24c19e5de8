"""``link`` (FAILURES F8, F13): the terminals reach the switches through the fault proxy
(loadtest/faultproxy, one proxy per switch); at set times each Toxiproxy toxic is
switched on, upstream (requests) and then downstream (answers), and off again; each
is a fault window of its own, ``window_s`` (2.5 s) long, the two that hold data back
(``latency``, ``timeout``) ``long_s`` (the EDC time-out + 1 s) so that answers do come
too late: removing a toxic lets through what it held.

| toxic | attributes | what the terminals see |
|---|---|---|
| ``latency`` | 4000 +/- 2000 ms | 2-6 s late: some past the 5 s time-out (a reversal) |
| ``bandwidth`` | 1 KB/s | a 217-byte request takes 0.2 s |
| ``slow_close`` | 2000 ms | a close passed on 2 s late (a terminal that gave up) |
| ``timeout`` | 0 (blackhole) | nothing arrives: time-outs; the toxic's removal closes |
| ``reset_peer`` | 50 ms | the first data dropped, then RST to both ends |
| ``slicer`` | 16 +/- 8 bytes, 5 ms apart | every unit in slices across reads |
| ``limit_data`` | 300 bytes up, 200 down | a connection cut in the middle of a frame |

Time-outs and cut connections become pending reversals that settle once the toxic
is gone; the checker judges every key.  ``--param toxics=latency,timeout`` picks
toxics, ``streams=upstream`` a direction; ``window_s``, ``long_s``, ``gap_s`` (between
two windows, 1.5 s), ``lead_s`` (before the first, 4 s) and ``tail_s`` (kept clear at
the end, 5 s), ``seed`` (the proxy's jitter and slices).  Promised: approvals again
within 5 s of each toxic's removal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from loadtest.faultproxy import ClientProxy, ThreadedFaultProxy
from terminal_sim.link import TcpLink

from ..config import RunConfig
from ..context import Acceptance, FaultContext
from ..history import Exchange
from ..metrics import Figures
from . import Scenario, recovered_within, register

RECOVERY_LIMIT_S = 5.0
#: Toxics that hold data back while on (their windows outlast the EDC time-out).
HOLDING = ("latency", "timeout")
STREAMS = ("upstream", "downstream")
#: type -> (upstream attributes, downstream attributes), in the order they run.
_SLICES = {"average_size": 16, "size_variation": 8, "delay": 5000}
TOXICS: dict[str, tuple[dict[str, int], dict[str, int]]] = {
    "latency": ({"latency": 4000, "jitter": 2000}, {"latency": 4000, "jitter": 2000}),
    "bandwidth": ({"rate": 1}, {"rate": 1}),
    "slow_close": ({"delay": 2000}, {"delay": 2000}),
    "timeout": ({"timeout": 0}, {"timeout": 0}),
    "reset_peer": ({"timeout": 50}, {"timeout": 50}),
    "slicer": (_SLICES, _SLICES),
    "limit_data": ({"bytes": 300}, {"bytes": 200}),
}


@dataclass(frozen=True)
class ToxicWindow:
    toxic: str
    stream: str
    start_s: float  # seconds after the load begins
    length_s: float

    @property
    def label(self) -> str:
        return f"{self.toxic} {self.stream}"

    @property
    def attributes(self) -> dict[str, int]:
        up, down = TOXICS[self.toxic]
        return up if self.stream == "upstream" else down


def _names(cfg: RunConfig, param: str, known: tuple[str, ...]) -> list[str]:
    given = cfg.params.get(param)
    if not given:
        return list(known)
    names = [n.strip() for n in given.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"--param {param}: no {', '.join(unknown)}; there are "
                         f"{', '.join(known)}")
    return names


def schedule(cfg: RunConfig) -> list[ToxicWindow]:
    """The windows, toxic by toxic, upstream first, one after the other from
    ``lead_s``; ValueError when they do not fit in the load."""
    toxics = _names(cfg, "toxics", tuple(TOXICS))
    streams = _names(cfg, "streams", STREAMS)
    window_s, long_s = cfg.param_s("window_s", 2.5), cfg.param_s("long_s", cfg.timeout_s + 1)
    gap_s, lead_s = cfg.param_s("gap_s", 1.5), cfg.param_s("lead_s", 4.0)
    tail_s = cfg.param_s("tail_s", 5.0)
    if min(window_s, long_s) <= 0 or min(gap_s, lead_s, tail_s) < 0:
        raise ValueError("window_s and long_s must be positive, gap_s, lead_s, tail_s not "
                         "negative")
    windows, at_s = [], lead_s
    for toxic in toxics:
        for stream in (s for s in STREAMS if s in streams):
            length_s = long_s if toxic in HOLDING else window_s
            windows.append(ToxicWindow(toxic, stream, at_s, length_s))
            at_s += length_s + gap_s
    needed_s = at_s - gap_s + tail_s
    if needed_s > cfg.duration_s:
        raise ValueError(f"{len(windows)} toxic windows need a load of {needed_s:.0f} s "
                         f"(lead_s, windows, gap_s between, tail_s), not "
                         f"{cfg.duration_s:g} s: raise --duration-s")
    return windows


@register
class Link(Scenario):
    name = "link"
    summary = ("the terminals through the fault proxy; each toxic (latency+jitter, "
               "bandwidth, slow_close, timeout 0, reset_peer, slicer, limit_data) up- "
               "and downstream in turn, 2.5 s each (6 s: latency, timeout)")
    engines = ("sqlite",)
    full_settings = {"duration_s": 78.0}
    #: CI: a shorter EDC time-out, so the holding toxics' windows can be short too
    ci_settings = {"duration_s": 38.0, "timeout_s": 2.0}
    ci_params = {"window_s": "1", "gap_s": "0.8", "lead_s": "2.5", "tail_s": "3"}

    def __init__(self) -> None:
        self.proxies: list[ClientProxy] = []
        self.windows: list[ToxicWindow] = []

    def unsupported(self, cfg: RunConfig) -> str | None:
        try:
            schedule(cfg)
        except ValueError as exc:
            return str(exc)
        return super().unsupported(cfg)

    def setup(self, ctx: FaultContext) -> None:
        seed = int(ctx.cfg.params.get("seed", "1"))
        fp = ctx.stack.enter_context(ThreadedFaultProxy(seed=seed))
        client = fp.client()
        self.proxies = [client.create(upstream=f"127.0.0.1:{port}", name=f"edc-{index}")
                        for index, port in enumerate(ctx.switches.ports)]
        ports = [proxy.listen_port for proxy in self.proxies]
        ctx.mark("fault proxy up", ", ".join(f"{p.listen} -> {p.upstream}"
                                             for p in self.proxies))
        # terminal i logged on to switch i % n: it stays with it, through its proxy
        ctx.connect = lambda _tid, index: TcpLink("127.0.0.1", ports[index % len(ports)])

    def inject(self, ctx: FaultContext) -> None:
        self.windows = schedule(ctx.cfg)
        for window in self.windows:
            ctx.wait_until(ctx.load_start_s + window.start_s)
            name = f"chaos_{window.toxic}_{window.stream}"
            with ctx.fault(window.label):
                for proxy in self.proxies:
                    proxy.add_toxic(window.toxic, name=name, stream=window.stream,
                                    attributes=window.attributes)
                ctx.mark(f"{window.label} on", str(window.attributes))
                ctx.sleep(window.length_s)
                for proxy in self.proxies:
                    proxy.destroy_toxic(name)

    def acceptance(self, cfg: RunConfig, fig: Figures) -> list[Acceptance]:
        return recovered_within(fig, RECOVERY_LIMIT_S, "the toxic's removal")

    def report_section(self, cfg: RunConfig, fig: Figures,
                       exchanges: Sequence[Exchange]) -> list[str]:
        lines = ["## Toxics", "", "| window | toxic | stream | attributes | purchases sent "
                 "inside | not approved (by result) | recovery |", "|---|---|---|---|---|---|---|"]
        for window, w in zip(self.windows, fig.windows, strict=False):
            results = ", ".join(f"{k}: {n}" for k, n in sorted(w.not_approved_inside.items()))
            lines.append(f"| {window.label} | `{window.toxic}` | {window.stream} | "
                         f"{window.attributes} | {w.purchases_inside} | {results or '-'} | "
                         f"{'-' if w.recovery_s is None else f'{w.recovery_s:.2f} s'} |")
        return lines

    def summary_lines(self) -> list[str]:
        return [f"{len(self.windows)} toxic windows: "
                f"{', '.join(w.label for w in self.windows)}"]
