"""``make load``, small and short: Locust EDC users against a real switch process,
on SQLite, on PostgreSQL, with two Locust workers, and with the web UI up until SIGINT.

Locust runs in its own process (``python -m loadtest.load`` starts it): gevent
monkey-patches whatever imports it, so nothing here imports locust.  Without
locust installed the tests skip with the reason, except under ``CI=true``.
PostgreSQL: tests/postgres/pg.py's rule (skipped without a server, failed under CI).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

#: The shape's duration; seeding, start-up and shutdown come on top (about 20 s in all).
DURATION_S = 10
BOUND_S = 120
SMALL_WORLD = ["--kpm", "120", "--terminals", "6"]
UI_WAIT_S = 60.0


def require_locust() -> None:
    if importlib.util.find_spec("locust") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("locust is not installed (pip install -e '.[dev]')")
        pytest.skip("locust is not installed (pip install -e '.[dev]')")


def run_load(*extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loadtest.load", "--duration-s", str(DURATION_S),
         *SMALL_WORLD, *extra],
        capture_output=True, text=True, timeout=BOUND_S, check=False,
    )


def assert_passed(run: subprocess.CompletedProcess[str]) -> None:
    assert run.returncode == 0, run.stdout + run.stderr
    assert "VERDICT: load run passed" in run.stdout
    assert "6032980" not in run.stdout + run.stderr, "a full PAN in the output"


def approved_purchases(workdir: Path) -> int:
    with (workdir / "load_stats.csv").open(newline="") as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    purchases = rows["purchase"]
    return int(purchases["Request Count"]) - int(purchases["Failure Count"])


@pytest.mark.slow
def test_load_run_passes_and_writes_reports(tmp_path: Path) -> None:
    require_locust()
    workdir = tmp_path / "load"
    run = run_load("--workdir", str(workdir))
    assert_passed(run)
    assert (workdir / "report.html").stat().st_size > 0
    assert approved_purchases(workdir) > 0


@pytest.mark.slow
def test_load_run_on_postgresql_drops_its_database(tmp_path: Path) -> None:
    require_locust()
    from tests.postgres.pg import SERVER_URL, require_postgres

    require_postgres()
    server = make_url(SERVER_URL)
    pg_url = server.render_as_string(hide_password=False).removesuffix(f"/{server.database}")
    run = run_load("--engine", "postgresql", "--pg-url", pg_url,
                   "--workdir", str(tmp_path / "load"))
    assert_passed(run)
    found = re.search(r"database: postgresql \((bpnt_bench_[0-9a-f]+)\)", run.stdout)
    assert found, run.stdout
    engine = create_engine(SERVER_URL)
    try:
        with engine.connect() as conn:
            left = conn.execute(text("SELECT count(*) FROM pg_database WHERE datname = :name"),
                                {"name": found.group(1)}).scalar_one()
    finally:
        engine.dispose()
    assert left == 0, f"{found.group(1)} was not dropped"
    assert approved_purchases(tmp_path / "load") > 0


@pytest.mark.slow
def test_two_workers_split_the_terminals_and_the_master_sums_them(tmp_path: Path) -> None:
    require_locust()
    workdir = tmp_path / "load"
    run = run_load("--workers", "2", "--workdir", str(workdir))
    assert_passed(run)
    assert "2 of 2 load process(es) reported" in run.stdout
    shares = sorted(re.findall(r"world: 3 terminals of share (\d)/2",
                               (workdir / "locust-worker-0.log").read_text()
                               + (workdir / "locust-worker-1.log").read_text()))
    assert shares == ["0", "1"]
    summary = json.loads((workdir / "terminals.json").read_text())
    # the master's aggregated stats count what both workers' terminals saw approved
    assert approved_purchases(workdir) == summary["approved_purchases"] > 0


def _lines(proc: subprocess.Popen[str], into: queue.Queue[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        into.put(line)


def _wait_for_line(lines: queue.Queue[str], seen: list[str], pattern: str) -> re.Match[str]:
    deadline = time.monotonic() + UI_WAIT_S
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1.0)
        except queue.Empty:
            continue
        seen.append(line)
        if found := re.search(pattern, line):
            return found
    raise AssertionError(f"no line matching {pattern!r} in {UI_WAIT_S} s:\n{''.join(seen)}")


def _stats_with_traffic(url: str) -> dict[str, Any]:
    """/stats/requests, polled until it shows an approved purchase while the test runs
    (the verdict after Ctrl-C wants one: a SIGINT after the first logon alone was a
    failed run, seen in CI on 2026-12-03)."""
    deadline = time.monotonic() + UI_WAIT_S
    report: dict[str, Any] = {}
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{url}/stats/requests", timeout=5) as response:
            report = json.load(response)
        approved = [s for s in report["stats"]
                    if s["name"] == "purchase" and s["num_requests"] > s["num_failures"]]
        if report["state"] in ("spawning", "running") and approved:
            return report
        time.sleep(0.5)
    raise AssertionError(f"no traffic in /stats/requests within {UI_WAIT_S} s: {report}")


@pytest.mark.slow
def test_ui_run_serves_stats_until_sigint_then_prints_the_verdict(tmp_path: Path) -> None:
    require_locust()
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadtest.load", "--ui", "--duration-s", "60", *SMALL_WORLD,
         "--max-runtime-s", "90", "--workdir", str(tmp_path / "load")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []
    reader = threading.Thread(target=_lines, args=(proc, lines), daemon=True)
    reader.start()
    try:
        url = _wait_for_line(lines, seen, r"Locust web UI: (http://127\.0\.0\.1:\d+)").group(1)
        report = _stats_with_traffic(url)
        assert any(s["name"] == "logon" for s in report["stats"]), report
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=BOUND_S) == 0
    finally:
        if proc.poll() is None:  # SIGTERM: loadtest.load still stops its children
            proc.terminate()
            try:
                proc.wait(timeout=BOUND_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
    reader.join(timeout=10)
    while not lines.empty():
        seen.append(lines.get())
    output = "".join(seen)
    assert "stopping Locust: SIGINT received" in output, output
    assert "VERDICT: load run passed" in output, output
    assert "1 of 1 load process(es) reported" in output, output
