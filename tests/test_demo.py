"""``make run`` end to end, smaller: a real switch process, a fleet, every scenario."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from switch.admin.demo import build_world
from switch.security.keyring import Keyring
from switch.security.keys import unwrap_key
from switch.settings import Settings
from terminal_sim.demo import run_demo

KPM = 30


def test_demo_runs_every_scenario_and_the_invariant_holds(tmp_path: Path) -> None:
    lines: list[str] = []
    code = run_demo(transactions=48, kpm=KPM, workdir=tmp_path, out=lines.append)
    text = "\n".join(lines)
    assert code == 0, text
    assert "VERDICT: money invariant holds" in text
    assert "RULES VERDICT: every rule as set, money and stock invariant hold" in text
    assert "[FAIL]" not in text
    for rc in ("12", "14", "51", "54", "55", "57", "58", "62", "75", "94", "13", "05", "65",
               "ST"):
        assert f"expected {rc}" in text, f"no scenario shows RC {rc}"
    _assert_no_secrets(tmp_path)


def _working_keys(db_path: Path) -> list[bytes]:
    """The terminals' current clear TPKs and TAKs (unwrapped here, with the KEK)."""
    keys = Keyring.from_settings(Settings())
    clear = []
    with sqlite3.connect(db_path) as conn:
        for tid, tpk, tak in conn.execute("SELECT tid, tpk_wrapped, tak_wrapped FROM terminals"):
            for kind, wrapped in (("TPK", tpk), ("TAK", tak)):
                if wrapped:
                    clear.append(unwrap_key(keys.kek, wrapped, f"{kind}:{tid}"))
    return clear


def _assert_no_secrets(workdir: Path) -> None:
    """No full PAN, master key or working key in the switch log or any database column."""
    world = build_world(kpm_count=KPM)
    working = _working_keys(workdir / "demo.db")
    assert len(working) >= 2 * 8, "the fleet's terminals logged on"
    clear_keys = [t.tmk for t in world.terminals] + working
    secrets = [c.pan for c in world.cards] + [k.hex() for k in clear_keys]
    secrets += [k.hex().upper() for k in clear_keys]
    log = (workdir / "switch.log").read_text()
    assert "listening" in log
    dumped = [log]
    with sqlite3.connect(workdir / "demo.db") as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in conn.execute(f"SELECT * FROM {table}"):  # noqa: S608 - our own names
                dumped.append(" ".join(v.hex() if isinstance(v, bytes) else str(v) for v in row))
    everything = "\n".join(dumped)
    leaked = [s[:6] + "…" for s in secrets if s in everything]
    assert not leaked, f"secrets found in log or database: {leaked}"
