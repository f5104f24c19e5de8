"""``make run`` end to end, smaller: a real switch process, a fleet, every scenario."""

from __future__ import annotations

from pathlib import Path

from terminal_sim.demo import run_demo


def test_demo_runs_every_scenario_and_the_invariant_holds(tmp_path: Path) -> None:
    lines: list[str] = []
    code = run_demo(transactions=48, kpm=30, workdir=tmp_path, out=lines.append)
    text = "\n".join(lines)
    assert code == 0, text
    assert "VERDICT: money invariant holds" in text
    assert "[FAIL]" not in text
    for rc in ("14", "51", "54", "55", "57", "58", "62", "75", "94", "13", "05"):
        assert f"expected {rc}" in text, f"no scenario shows RC {rc}"
