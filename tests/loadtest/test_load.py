"""``make load``, small and short: Locust EDC users against a real switch process.

Locust runs in its own process (``python -m loadtest.load`` starts it): gevent
monkey-patches whatever imports it, so nothing here imports locust.  Without
locust installed the test skips with the reason, except under ``CI=true``.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

#: The shape's duration; seeding, start-up and shutdown come on top (about 20 s in all).
DURATION_S = 10
BOUND_S = 120


@pytest.mark.slow
def test_load_run_passes_and_writes_reports(tmp_path: Path) -> None:
    if importlib.util.find_spec("locust") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("locust is not installed (pip install -e '.[dev]')")
        pytest.skip("locust is not installed (pip install -e '.[dev]')")
    workdir = tmp_path / "load"
    run = subprocess.run(
        [sys.executable, "-m", "loadtest.load", "--duration-s", str(DURATION_S), "--kpm", "120",
         "--terminals", "6", "--workdir", str(workdir)],
        capture_output=True, text=True, timeout=BOUND_S, check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "VERDICT: load run passed" in run.stdout
    assert (workdir / "report.html").stat().st_size > 0
    with (workdir / "load_stats.csv").open(newline="") as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    purchases = rows["purchase"]
    assert int(purchases["Request Count"]) - int(purchases["Failure Count"]) > 0
    assert "6032980" not in run.stdout + run.stderr, "a full PAN in the output"
