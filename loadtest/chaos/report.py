"""A run's report in its directory: ``report.md`` (verdict, acceptance, figures, fault
windows, timeline), ``timeline.png`` (approvals/s and p99 latency over time, the
fault windows shaded) and ``history.jsonl`` (every exchange, skip, mark and window)."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from .checker import RULES
from .history import History
from .metrics import Figures

if TYPE_CHECKING:
    from .harness import RunResult

#: Violations listed in full in report.md (all are counted).
MAX_LISTED = 40
#: Fault windows named in the plot (more would be unreadable).
MAX_WINDOW_LABELS = 20


def write_report(result: RunResult, history: History) -> None:
    history.write_jsonl(result.run_dir / "history.jsonl")
    plot(result.figures, history, result.run_dir / "timeline.png", result.cfg.timeout_s)
    (result.run_dir / "report.md").write_text("\n".join(markdown(result, history)) + "\n",
                                              encoding="utf-8")


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _counts(counts: Counter[str]) -> str:
    return ", ".join(f"{name}: {n}" for name, n in sorted(counts.items())) or "-"


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}"


def markdown(result: RunResult, history: History) -> list[str]:
    cfg, fig, verdict = result.cfg, result.figures, result.verdict
    offered = (f"{cfg.rate_per_s:g} purchases/s offered for {cfg.duration_s:g} s"
               if cfg.purchases is None else
               f"{cfg.purchases} purchases back to back (a closed loop, at most "
               f"{cfg.duration_s:g} s)")
    lines = [f"# Chaos run: {result.scenario} ({cfg.engine}, {cfg.switches} switch"
             f"{'es' if cfg.switches > 1 else ''})", "",
             f"{cfg.terminals} terminals, {offered}, EDC time-out {cfg.timeout_s:g} s, settle "
             f"{cfg.settle_s:g} s, repeat {cfg.repeat}, params {cfg.params or '{}'}"
             f"{', CI version' if cfg.ci else ''}; switch module `{cfg.switch_module}`.", "",
             f"**Verdict: {'PASS' if result.ok else 'FAIL'}** (checker {verdict.word}, "
             f"acceptance {'met' if all(a.ok for a in result.acceptance) else 'NOT met'})", "",
             "| figure | value |", "|---|---|",
             f"| purchases attempted | {fig.purchases} |",
             f"| sent | {fig.sent} |",
             f"| approvals | {fig.approved} |"]
    lines += [f"| RC {rc} | {n} |" for rc, n in sorted(fig.by_rc.items())]
    lines += [f"| {outcome} | {n} |" for outcome, n in sorted(fig.by_outcome.items())]
    first_91 = [w.first_91_s for w in fig.windows]
    recovery = [w.recovery_s for w in fig.windows]
    lines += [f"| timeouts | {fig.timeouts} |",
              f"| purchases not started | {sum(fig.skipped.values())} "
              f"({_counts(fig.skipped)}) |",
              f"| reversals sent (0400 + 0401) | {fig.reversals_sent} |",
              f"| reversals answered 00 | {fig.reversals_answered_00} "
              f"({fig.keys_reversed} purchases) |",
              f"| reversals by answer | {_counts(fig.reversals_by_result)} |",
              f"| reversals still pending at the end | {fig.reversals_pending} |",
              f"| latency of answered purchases p50 / p99 / max, ms | {_ms(fig.p50_ms)} / "
              f"{_ms(fig.p99_ms)} / {_ms(fig.max_ms)} |",
              f"| time to first 91 after the fault | {', '.join(map(_s, first_91)) or '-'} |",
              f"| recovery: first approval after the fault ends | "
              f"{', '.join(map(_s, recovery)) or '-'} |",
              f"| standing approvals seen / standing debits in the ledger | "
              f"{verdict.standing_approvals} / {verdict.standing_debits} |",
              f"| checker verdict | **{verdict.word}** ({len(verdict.violations)} "
              "violations) |", ""]
    lines += _checker(result)
    lines += _acceptance(result)
    if result.section:
        lines += [*result.section, ""]
    lines += _windows(fig)
    lines += ["## Timeline", "", "| run s | event | detail |", "|---|---|---|"]
    lines += [f"| {m.at_s:.2f} | {m.label} | {m.detail} |"
              for m in sorted(history.marks, key=lambda m: m.at_s)]
    lines += ["", "## Files", "",
              "`history.jsonl` (every exchange, skip, mark and window), `timeline.png`, "
              "`switch-N.log`" + (", `chaos.db`" if cfg.engine == "sqlite" else "") + "."]
    if result.notes:
        lines += ["", "## Notes", "", *[f"- {note}" for note in result.notes]]
    return lines


def _checker(result: RunResult) -> list[str]:
    verdict = result.verdict
    counts = verdict.by_rule()
    lines = ["## Checker", "", "| rule | | violations |", "|---|---|---|"]
    lines += [f"| `{rule}` | {text} | {counts.get(rule, 0)} |" for rule, text in RULES.items()]
    if verdict.violations:
        lines += ["", f"Violations (first {MAX_LISTED}):", ""]
        lines += [f"- {v}" for v in verdict.violations[:MAX_LISTED]]
    return [*lines, ""]


def _acceptance(result: RunResult) -> list[str]:
    if not result.acceptance:
        return []
    lines = ["## Acceptance", "", "| promise | met | measured |", "|---|---|---|"]
    lines += [f"| {a.name} | {'yes' if a.ok else '**NO**'} | {a.measured} |"
              for a in result.acceptance]
    return [*lines, ""]


def _windows(fig: Figures) -> list[str]:
    if not fig.windows:
        return []
    lines = ["## Fault windows", "",
             "| window | from s | to s | first 91 | first failure | recovery | terminals "
             "touched | approvals inside | longest wait ms | purchases sent inside | "
             "of them not approved |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {w.window.label} | {w.window.start_s:.2f} | {w.window.end_s:.2f} | "
              f"{_s(w.first_91_s)} | {_s(w.first_failure_s)} | {_s(w.recovery_s)} | "
              f"{w.terminals_touched} | {w.approvals_inside} | {w.max_wait_ms:.0f} | "
              f"{w.purchases_inside} | {_counts(w.not_approved_inside)} |"
              for w in fig.windows]
    return [*lines, ""]


def plot(fig: Figures, history: History, target: Path, timeout_s: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), dpi=80, sharex=True)
    seconds = [b.start_s for b in fig.series]
    top.step(seconds, [b.approvals_per_s for b in fig.series], where="post", color="C0",
             label="approvals/s")
    top.step(seconds, [b.failures_per_s for b in fig.series], where="post", color="C3",
             label="not 00 (91, time-out, link down...)/s", linewidth=0.8)
    top.set_ylabel("per second")
    p99 = [(b.start_s, b.p99_ms) for b in fig.series if not math.isnan(b.p99_ms)]
    bottom.plot([t for t, _ in p99], [max(p, 0.1) for _, p in p99], "o-", color="C1",
                markersize=3)
    bottom.axhline(timeout_s * 1e3, color="red", linewidth=0.8, linestyle=":")
    bottom.text(0, timeout_s * 1e3 * 1.1, f"EDC time-out {timeout_s:g} s", color="red",
                fontsize=7)
    bottom.set_yscale("log")
    bottom.set_ylabel("p99 latency, ms (log)\npurchases and reversals")
    bottom.set_xlabel("run time, s")
    for axis in (top, bottom):
        for n, window in enumerate(history.windows):
            axis.axvspan(window.start_s, window.end_s, color="grey", alpha=0.3,
                         label="fault" if n == 0 and axis is top else None)
    if 1 < len(history.windows) <= MAX_WINDOW_LABELS:  # several faults: name each
        for window in history.windows:
            top.text(window.start_s, 0.98, window.label, transform=top.get_xaxis_transform(),
                     rotation=90, fontsize=6, va="top", ha="right", color="dimgrey")
    top.legend(fontsize=8)
    top.set_title("approvals per second and p99 latency, fault windows shaded")
    figure.tight_layout()
    figure.savefig(target)
    plt.close(figure)
