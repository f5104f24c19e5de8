"""Several switches behind one address (loadtest/haproxy.py, docs/SCALING.md): the
health check's bytes are the switch's real echo, a real HAProxy marks a real switch
UP on them, DOWN on a kill or a wrong answer; the launcher serves EDCs at one address
and stops what it started; and the ``haproxy-kill`` chaos scenario (CI version, the
harness's own PostgreSQL): a switch killed behind HAProxy, the terminals keep the one
address, the checker passes.

Without ``haproxy`` (or PostgreSQL) these tests skip with the reason, except under
``CI=true``, where they fail (.ci/run installs Debian's haproxy).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest.chaos.postgres import pg_bindir
from loadtest.chaos.switches import SwitchFleet
from loadtest.haproxy import (
    CHECK_FALL,
    Backend,
    Haproxy,
    echo_answer,
    echo_message,
    echo_request,
    parse_show_stat,
    render_config,
    switch_env,
    unavailable,
)
from switch.core.replies import build_response
from switch.db.schema import open_database
from switch.protocol import codes
from switch.protocol.framing import TcpFramer, frame_tcp
from switch.protocol.unit import Tpdu, Unit, decode_unit, encode_unit
from terminal_sim.demo import fresh_sqlite
from tests.loadtest.test_chaos import ci_run, require

ROOT = Path(__file__).resolve().parents[2]
STATE_WAIT_S = 10.0


def require_haproxy() -> None:
    require(unavailable())


def test_the_check_sends_an_echo_test_and_expects_its_0810_rc_00() -> None:
    framed = echo_request()
    assert int.from_bytes(framed[:2], "big") == len(framed) - 2  # HOST_SPEC §1 framing
    request = decode_unit(framed[2:])
    assert request.tpdu == Tpdu("0001", "0000")
    assert request.message == echo_message()
    assert request.message.mti == "0800" and request.message.text(3) == "990000"
    assert set(request.message.fields) == {3, 11, 24, 41}  # §4: no 42, no MAC
    answer = echo_answer()
    assert int.from_bytes(answer[:2], "big") == len(answer) - 2
    response = decode_unit(answer[2:])
    assert response.tpdu == Tpdu("0000", "0001")  # swapped
    assert response.message.mti == "0810" and response.message.text(39) == codes.APPROVED
    assert 37 not in response.message.fields  # §3: no RRN in an 0810


def test_the_config_leaves_idle_connections_to_the_switch() -> None:
    """HAProxy's client and server time-outs outlast the switch's idle time-out (and the
    EDC's 30 s response time-out), so it is never HAProxy that cuts an EDC first."""
    text = render_config(8583, [Backend("switch-0", "127.0.0.1", 9000)], Path("/tmp/s.sock"),
                         idle_timeout_s=300)
    assert "timeout client 330s" in text and "timeout server 330s" in text
    assert f"tcp-check send-binary {echo_request().hex()}" in text
    assert f"tcp-check expect binary {echo_answer().hex()}" in text
    assert "balance leastconn" in text and "on-marked-down shutdown-sessions" in text
    assert "mode tcp" in text and "bind 127.0.0.1:8583" in text


def test_show_stat_is_read_per_server() -> None:
    text = ("# pxname,svname,qcur,qmax,scur,smax,slim,stot,status,check_status\n"
            "edc,FRONTEND,,,1,2,8192,9,OPEN,\n"
            "switches,switch-0,0,0,0,1,4096,5,DOWN,L4CON\n"
            "switches,switch-1,0,0,1,2,4096,7,UP,L7OK\n"
            "switches,BACKEND,0,0,1,2,,12,UP,\n")
    states = parse_show_stat(text)
    assert set(states) == {"switch-0", "switch-1"}
    assert states["switch-0"].down and not states["switch-0"].up
    assert states["switch-1"].up and states["switch-1"].total == 7
    assert states["switch-1"].current == 1


@pytest.fixture
def one_switch(tmp_path: Path) -> Iterator[SwitchFleet]:
    url = fresh_sqlite(tmp_path / "haproxy.db")
    open_database(url).engine.dispose()
    fleet = SwitchFleet(url, tmp_path, extra_env=switch_env())
    try:
        fleet.start_all(1)
        yield fleet
    finally:
        fleet.stop_all()


@pytest.mark.slow
def test_a_real_switch_answers_the_check_byte_for_byte(one_switch: SwitchFleet) -> None:
    with socket.create_connection(("127.0.0.1", one_switch.ports[0]), timeout=5) as sock:
        sock.sendall(echo_request())
        got = b""
        while len(got) < len(echo_answer()):
            chunk = sock.recv(4096)
            if not chunk:
                break
            got += chunk
    assert got == echo_answer()


@pytest.mark.slow
def test_haproxy_marks_a_killed_switch_down_and_a_restarted_one_up(
        one_switch: SwitchFleet, tmp_path: Path) -> None:
    require_haproxy()
    with Haproxy(one_switch.ports, tmp_path) as lb:
        assert lb.wait_all_up(STATE_WAIT_S), lb.servers()
        assert lb.servers()["switch-0"].check_status == "L7OK"
        # through the one address: the switch's own echo answer
        with socket.create_connection(("127.0.0.1", lb.port), timeout=5) as sock:
            sock.sendall(echo_request())
            framer = TcpFramer()
            while (unit := framer.next_unit()) is None:
                framer.receive_data(sock.recv(4096))
        assert frame_tcp(unit) == echo_answer()
        one_switch.kill(0)
        assert lb.wait_for("switch-0", "DOWN", STATE_WAIT_S) is not None, lb.servers()
        assert lb.servers()["switch-0"].check_status.startswith("L4")  # refused
        one_switch.start(0)
        assert lb.wait_for("switch-0", "UP", STATE_WAIT_S) is not None, lb.servers()
    assert lb.proc is not None and lb.proc.returncode is not None  # stopped by PID
    log = (tmp_path / "haproxy.log").read_text(encoding="utf-8")
    assert "switch-0 is DOWN" in log and "switch-0 is UP" in log


def _answering(rc: str) -> tuple[socket.socket, threading.Event, threading.Thread]:
    """A listener that answers every echo with an 0810 carrying ``rc``."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()
    wrong = frame_tcp(encode_unit(Unit(Tpdu("0000", "0001"),
                                       build_response(echo_message(), rc))))

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed at the end of the test
                return
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(4096)
                    conn.sendall(wrong)
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, stop, thread


@pytest.mark.slow
def test_an_echo_answered_with_another_rc_is_not_healthy(tmp_path: Path) -> None:
    """The expect is the whole 0810 with RC 00: a listener that answers 96 is DOWN."""
    require_haproxy()
    listener, stop, thread = _answering(codes.SYSTEM_MALFUNCTION)
    try:
        with Haproxy([listener.getsockname()[1]], tmp_path) as lb:
            took = lb.wait_for("switch-0", "DOWN", STATE_WAIT_S)
            assert took is not None, lb.servers()
            assert lb.servers()["switch-0"].check_status == "L7RSP"
    finally:
        stop.set()
        thread.join(5)
        listener.close()
    assert f"fall {CHECK_FALL}" in (tmp_path / "haproxy.cfg").read_text(encoding="utf-8")


def _pids_alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        alive.append(pid)
    return alive


@pytest.mark.slow
def test_the_launcher_serves_one_address_and_stops_what_it_started(tmp_path: Path) -> None:
    """``python -m loadtest.haproxy --switches 2`` on a fresh PostgreSQL database: an
    EDC logs on and buys through the printed address; SIGTERM stops every PID it
    printed."""
    require_haproxy()
    from loadtest.bench import BASKET
    from switch.admin.demo import build_world
    from switch.security.keyring import Keyring
    from switch.settings import load_settings
    from terminal_sim.world import SimWorld
    from tests.postgres.pg import SERVER_URL, require_postgres

    require_postgres()
    pg_url = SERVER_URL.rsplit("/", 1)[0]
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadtest.haproxy", "--switches", "2", "--engine",
         "postgresql", "--pg-url", pg_url, "--duration-s", "120", "--out", str(tmp_path)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip())
            if "EDCs use ONE address" in line:
                break
        text = "\n".join(lines)
        found = re.search(r"EDCs use ONE address: 127\.0\.0\.1:(\d+)", text)
        assert found, text
        port = int(found[1])
        pids = [int(p) for p in re.findall(r"pid (\d+)", text)]
        assert len(pids) == 3, text  # two switches and haproxy
        keys = Keyring.from_settings(load_settings())
        with tempfile.TemporaryDirectory() as state:
            sim = SimWorld(build_world(kpm_count=200), keys.imk_ac, "127.0.0.1", port,
                           timeout_s=10, on_screen=lambda _line: None,
                           state_path=Path(state) / "edc.json")
            term = next(t for t in sim.world.terminals if t.label == "ok")
            edc = sim.edc(term)
            assert edc.ensure_logged_on(), text
            card = sim.take_spare_card()
            sim.insert(edc, card)
            result = edc.purchase(BASKET, card.pin)
            assert result.rc == codes.APPROVED, (result, text)
            assert edc.echo().rc == codes.APPROVED
        os.kill(proc.pid, signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, text + rest
        assert "stopped haproxy and the switches" in rest
        assert _pids_alive(pids) == [], text + rest
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.mark.slow
def test_haproxy_kill_scenario(tmp_path: Path) -> None:
    """Two switches behind HAProxy on the harness's own PostgreSQL; switch 0 killed
    mid-traffic: HAProxy marks it DOWN (its stats socket, polled with a deadline), the
    terminals keep the one address and buy on switch 1, the checker passes (no
    approval lost, no double debit, the ledger invariant), switch 0 comes back UP."""
    require_haproxy()
    require(None if pg_bindir() else "PostgreSQL server binaries (initdb, pg_ctl) not found")
    result, log = ci_run(tmp_path, "haproxy-kill", engine="postgresql")
    assert result.ok, log
    assert result.verdict.ok, log
    assert result.cfg.switches == 2
    fig = result.figures
    assert [w.window.label for w in fig.windows] == ["switch-0 killed"], log
    assert fig.windows[0].terminals_touched > 0, log  # the kill was felt ...
    assert fig.by_outcome["link-down"] + fig.by_outcome["timeout"] > 0, log
    assert fig.reversals_pending == 0, log  # ... and every cut request reversed
    assert result.verdict.standing_debits == result.verdict.standing_approvals
    assert len(result.acceptance) == 5 and all(a.ok for a in result.acceptance), log
    report = (result.run_dir / "report.md").read_text(encoding="utf-8")
    assert "## HAProxy" in report and "| at the restart | switch-0 | DOWN |" in report, report


@pytest.mark.slow
def test_the_bench_can_target_haproxy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``loadtest.bench --haproxy``: the load goes to HAProxy's one address in front of
    the switches, every purchase is approved, the money invariant holds."""
    require_haproxy()
    import csv

    from loadtest import bench

    code = bench.main(["--engine", "sqlite", "--switches", "2", "--haproxy", "--rate", "40",
                       "--duration-s", "2", "--warmup", "0", "--kpm", "100", "--terminals",
                       "4", "--connections", "8", "--out", str(tmp_path),
                       "--max-total-s", "120"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert re.search(r"haproxy pid \d+ on 127\.0\.0\.1:\d+ in front of them", printed), printed
    assert "behind HAProxy (one address)" in printed and "/ haproxy / db |" in printed
    with (tmp_path / "rate-sqlite-haproxy.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1 and int(rows[0]["approved"]) == 80, rows
    log = (tmp_path / "haproxy.log").read_text(encoding="utf-8")
    assert "edc switches/switch-0" in log and "edc switches/switch-1" in log, log[-2000:]
