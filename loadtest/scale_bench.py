"""Throughput against the number of switch processes, in one run (issue 17).

    python -m loadtest.scale_bench --processes 1,2,3 --sweep 1000,2000 --duration-s 20

For each count of ``bpnt-switch serve`` processes on one PostgreSQL database, the whole
:mod:`loadtest.bench` run (a fresh database, real EDCs and cards, each rate offered
open-loop, the money invariant checked at the end), one after the other on the same
machine; then pgbench's TPC-B-like script on the same server (the same-run anchor:
the machine's own speed).  Out come a table (peak approved purchases/s, p99 at the
first rate, switch CPU per approved purchase), the ratios the issue asks for
(n processes ÷ one; two processes ÷ pgbench ``-c 8 -j 2``) and a plot,
``scale-postgresql.png``.

Everything runs on loopback; each bench run is bounded by ``--max-total-s`` and cleans
up after itself.  Exit status 1 if any run's money invariant fails.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from loadtest.bench import PG_BASE_URL, Args, RunResult, run, run_pgbench

OUT_DIR = Path("var/bench/scale")
#: pgbench's run the issue compares two processes with
PGBENCH_PARALLEL = "-c 8 -j 2"


@dataclass(frozen=True)
class ScalePoint:
    """One process count's run, reduced to what the issue asks about."""

    processes: int
    peak_per_s: float
    #: p99 latency (ms, from the scheduled send) at the first offered rate
    p99_first_ms: float
    #: switch CPU (all its processes) per approved purchase at the peak rate, µs
    cpu_us_per_purchase: float
    invariant_ok: bool


def cpu_model() -> str:
    """``lscpu``'s model name (from /proc/cpuinfo, which it reads)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def reduce(processes: int, result: RunResult) -> ScalePoint:
    peak = max(result.points, key=lambda p: p.approved_per_s)
    cpu_us = (peak.switch_cpu_pct / 100 / peak.approved_per_s * 1e6
              if peak.approved_per_s else float("inf"))
    return ScalePoint(processes, peak.approved_per_s, result.points[0].p99_ms, cpu_us,
                      result.invariants.ok)


def plot(points: list[ScalePoint], pgbench_tps: float | None, out_dir: Path) -> Path | None:
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [p.processes for p in points]
    ax.bar(xs, [p.peak_per_s for p in points], color="#3b7dd8", label="switch, peak approved/s")
    for p in points:
        ax.annotate(f"{p.peak_per_s:.0f}", (p.processes, p.peak_per_s), ha="center",
                    va="bottom")
    if pgbench_tps:
        ax.axhline(pgbench_tps, color="#d8553b", linestyle="--",
                   label=f"pgbench TPC-B {PGBENCH_PARALLEL}: {pgbench_tps:.0f} tps")
    ax.set_xticks(xs)
    ax.set_xlabel("bpnt-switch serve processes (one PostgreSQL)")
    ax.set_ylabel("per second")
    ax.set_title(f"Scale-out, one run ({cpu_model()[:40]})", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = out_dir / "scale-postgresql.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def markdown(points: list[ScalePoint], pgbench: dict[str, float], command: str,
             first_rate: float) -> list[str]:
    lines = [f"`{command}` ({cpu_model()}, {os.cpu_count()} vCPU, Python "
             f"{platform.python_version()}):", "",
             f"| processes | peak approved/s | ÷ one process | p99 at {first_rate:g}/s ms "
             "| switch CPU µs / approved | invariant |", "|---|---|---|---|---|---|"]
    one = points[0].peak_per_s if points and points[0].processes == 1 else None
    for p in points:
        ratio = f"{p.peak_per_s / one:.2f}" if one else "-"
        lines.append(f"| {p.processes} | {p.peak_per_s:.0f} | {ratio} | {p.p99_first_ms:.1f} "
                     f"| {p.cpu_us_per_purchase:.0f} | "
                     f"{'holds' if p.invariant_ok else 'BROKEN'} |")
    for label, tps in pgbench.items():
        lines.append(f"\npgbench TPC-B-like (`-i -s 10`, {label}) on the same server after "
                     f"the runs: {tps:.0f} tps.")
    parallel = pgbench.get(PGBENCH_PARALLEL)
    two = next((p for p in points if p.processes == 2), None)
    if parallel and two:
        lines.append(f"Two processes ÷ pgbench {PGBENCH_PARALLEL} = "
                     f"{two.peak_per_s / parallel:.2f}.")
    return lines


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, Args]:
    parser = argparse.ArgumentParser(prog="python -m loadtest.scale_bench",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", default="1,2,3", help="comma-separated counts")
    parser.add_argument("--sweep", default="1000,2000", help="offered rates per count")
    parser.add_argument("--duration-s", type=float, default=20.0, help="per rate")
    parser.add_argument("--kpm", type=int, default=10_000)
    # An EDC has one request in flight and the host locks per terminal: 32 terminals at
    # 1,000/s (31 purchases/s each, bench's default) would measure that lock, not scale.
    parser.add_argument("--terminals", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--pgbench-seconds", type=int, default=30)
    parser.add_argument("--pg-url", default=os.environ.get("BPNT_BENCH_PG_URL", PG_BASE_URL))
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument("--max-total-s", type=float, default=900.0, help="per bench run")
    ns = parser.parse_args(argv)
    counts = [int(n) for n in ns.processes.split(",")]
    rates = [float(r) for r in ns.sweep.split(",")]
    if any(n < 1 for n in counts) or any(r <= 0 for r in rates) or ns.duration_s <= 0:
        parser.error("process counts, rates and duration must be > 0")
    ns.counts = counts
    base = Args("postgresql", ns.kpm, ns.terminals, 1, rates, ns.duration_s, ns.connections,
                30.0, 200, False, ns.pgbench_seconds, ns.pg_url.rstrip("/"), ns.out, 0.0, 0.0,
                ns.max_total_s)
    return ns, base


def main(argv: list[str] | None = None) -> int:
    ns, base = parse_args(argv)
    command = "python -m loadtest.scale_bench " + " ".join(
        sys.argv[1:] if argv is None else argv)
    base.out.mkdir(parents=True, exist_ok=True)
    points = []
    for count in ns.counts:
        print(f"\n==== {count} switch process(es) ====", flush=True)
        points.append(reduce(count, run(replace(base, switches=count))))
    pgbench = run_pgbench(base, print)
    tps = pgbench.tps if pgbench is not None else {}
    png = plot(points, tps.get(PGBENCH_PARALLEL), base.out)
    print(f"\nplot: {png}" if png else "\nplot: matplotlib not installed")
    print("\n---- for docs/BENCHMARKS.md ----")
    print("\n".join(markdown(points, tps, command, base.rates[0])))
    print("---- end ----")
    return 0 if all(p.invariant_ok for p in points) else 1


if __name__ == "__main__":
    sys.exit(main())
