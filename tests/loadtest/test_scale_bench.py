"""scale_bench's arithmetic: the peak, CPU per approved purchase and the ratios it prints
(the runs themselves are loadtest.bench's, tested in test_bench*)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from loadtest.bench import RunResult
from loadtest.bench_load import PointStats
from loadtest.scale_bench import ScalePoint, markdown, reduce


def _point(rate: float, approved_per_s: float, switch_cpu_pct: float,
           p99_ms: float) -> PointStats:
    return PointStats(rate, 20.0, 0, 0, 0, approved_per_s, p99_ms=p99_ms,
                      switch_cpu_pct=switch_cpu_pct)


def _result(*points: PointStats, ok: bool = True) -> RunResult:
    invariants: Any = SimpleNamespace(ok=ok)
    return RunResult("postgresql", list(points), invariants)


def test_the_peak_rate_gives_the_cpu_per_purchase_and_the_first_rate_the_p99() -> None:
    got = reduce(2, _result(_point(1000, 990.0, 100.0, 545.0),
                            _point(2000, 1250.0, 125.0, 11_000.0)))
    assert got == ScalePoint(2, 1250.0, 545.0, 1000.0, True)


def test_ratios_against_one_process_and_pgbench() -> None:
    points = [ScalePoint(1, 800.0, 3000.0, 900.0, True),
              ScalePoint(2, 1200.0, 500.0, 950.0, True),
              ScalePoint(3, 1100.0, 400.0, 1000.0, False)]
    text = "\n".join(markdown(points, {"-c 8 -j 2": 1500.0}, "cmd", 1000.0))
    assert "| 2 | 1200 | 1.50 | 500.0 | 950 | holds |" in text
    assert "| 3 | 1100 | 1.38 | 400.0 | 1000 | BROKEN |" in text
    assert "Two processes ÷ pgbench -c 8 -j 2 = 0.80." in text
