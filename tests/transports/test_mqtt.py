"""MQTT against a real Mosquitto (our own, on a free loopback port): broker restart in
the middle of 200 purchases, two switch processes on one shared subscription, QoS 1
redelivery, and terminal presence from retained status and Last Will."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from switch.cli import main as switch_cli
from switch.protocol import codes
from switch.protocol.bpnt import BasketLine
from switch.transports.mqtt import request_topic
from switch.transports.presence import list_presence
from terminal_sim.card_reader import EmulatedReader
from terminal_sim.edc import Edc, EdcConfig, TxnResult
from terminal_sim.link import Link
from terminal_sim.links.mqtt import MqttLink
from tests.transports.conftest import Broker, serving, wait_for
from tests.world import PERIOD_SEN, HostWorld

SPINACH = BasketLine("SYR001", 1, 300_000)  # Rp 3.000: many purchases per wallet
PURCHASES = 200


class RecordingLink:
    """Keeps the last unit sent (to publish it again by hand)."""

    def __init__(self, inner: MqttLink) -> None:
        self.inner = inner
        self.last_unit = b""

    def exchange(self, unit: bytes, timeout_s: float) -> bytes:
        self.last_unit = unit
        return self.inner.exchange(unit, timeout_s)

    def close(self) -> None:
        self.inner.close()


class BrokerKiller:
    """Kills the broker a few milliseconds after its ``at``-th exchange starts: the
    request is then in flight (published, being processed, or its response on the way)."""

    def __init__(self, inner: MqttLink, broker: Broker, at: int, delay_s: float) -> None:
        self.inner, self.broker, self.at, self.delay_s = inner, broker, at, delay_s
        self.exchanges = 0
        self.fired = threading.Event()

    def exchange(self, unit: bytes, timeout_s: float) -> bytes:
        self.exchanges += 1
        if self.exchanges == self.at:
            timer = threading.Timer(self.delay_s, self._kill)
            timer.start()
        return self.inner.exchange(unit, timeout_s)

    def _kill(self) -> None:
        self.broker.stop()
        self.fired.set()

    def close(self) -> None:
        self.inner.close()


def _edc(world: HostWorld, link: Link, index: int, timeout_s: float) -> Edc:
    terminal = world.terminal(index=index)
    config = EdcConfig(terminal.tid, terminal.mid, terminal.tmk, timeout_s=timeout_s)
    return Edc(config, link, EmulatedReader(), clock=world.clock)


def _mqtt_link(broker: Broker, world: HostWorld, index: int) -> MqttLink:
    link = MqttLink("127.0.0.1", broker.port, world.terminal(index=index).tid, keepalive_s=5,
                    connect_timeout_s=3.0)
    assert link.wait_connected(10)
    return link


def _shopper(world: HostWorld, edc: Edc, cards: list[int], count: int,
             results: list[tuple[int, TxnResult]], done: Counter[str]) -> None:
    for n in range(count):
        card_index = cards[n % len(cards)]
        card = world.card(index=card_index)
        world.insert(edc, card)
        results.append((card_index, edc.purchase([SPINACH], card.pin)))
        done["purchases"] += 1


def _settle(edc: Edc) -> None:
    """Deliver any reversal still pending (bounded)."""
    for _ in range(10):
        if edc.send_pending_reversal():
            return
        time.sleep(0.2)
    raise AssertionError(f"reversal still pending on {edc.config.tid}")


def test_broker_restart_in_the_middle_of_200_purchases(
    world: HostWorld, broker: Broker, tmp_path: Path,
) -> None:
    with serving(world, "mqtt", tmp_path, broker.url) as linked:
        transport = linked.transport
        assert transport is not None
        links = [_mqtt_link(broker, world, i) for i in range(2)]
        killer = BrokerKiller(links[0], broker, at=PURCHASES // 4, delay_s=0.005)
        edcs = [_edc(world, link, i, timeout_s=2.0)
                for i, link in enumerate([killer, links[1]])]
        results: list[list[tuple[int, TxnResult]]] = [[], []]
        done: Counter[str] = Counter()
        shoppers = [threading.Thread(target=_shopper, args=(
            world, edcs[i], list(range(6 * i, 6 * i + 6)), PURCHASES // 2, results[i], done))
            for i in range(2)]
        for t in shoppers:
            t.start()
        assert killer.fired.wait(60), "broker never killed"
        restarted_at = done["purchases"]
        wait_for(lambda: not transport.connected.is_set(), 10, "switch sees the broker gone")
        # Keep the broker down until a terminal has felt it (a time-out or no connection).
        wait_for(lambda: any(not r.approved for rs in results for _, r in rs), 30,
                 "a terminal noticed the outage")
        broker.start()
        wait_for(transport.connected.is_set, 10, "switch reconnected")
        for t in shoppers:
            t.join(120)
            assert not t.is_alive()
        for edc in edcs:
            _settle(edc)
        for link in links:
            link.close()

    outcomes = Counter("approved" if r.approved else "timeout" if r.timed_out else r.display
                       for rs in results for _, r in rs)
    approved_per_card = Counter(i for rs in results for i, r in rs if r.approved)
    for index in range(12):
        expected = PERIOD_SEN - SPINACH.total_sen * approved_per_card[index]
        assert world.balance_sen(world.card(index=index)) == expected, f"card {index}"
    assert sum(outcomes.values()) == PURCHASES
    assert set(outcomes) <= {"approved", "timeout", codes.NO_CONNECTION_DISPLAY,
                             codes.display_for(codes.HOST_UNAVAILABLE)}, outcomes
    assert outcomes["approved"] >= PURCHASES * 3 // 4, outcomes
    approved_after = sum(r.approved for rs in results for _, r in rs[restarted_at // 2 + 5:])
    assert approved_after > 0, "no purchase approved after the restart"
    print(f"broker restarted after {restarted_at} purchases; outcomes {dict(outcomes)}; "
          f"switch sessions {transport.sessions}")


def test_qos1_redelivery_is_answered_again_and_debits_once(
    world: HostWorld, broker: Broker, tmp_path: Path,
) -> None:
    with serving(world, "mqtt", tmp_path, broker.url):
        recording = RecordingLink(_mqtt_link(broker, world, 0))
        edc = _edc(world, recording, 0, timeout_s=5.0)
        card = world.card()
        world.insert(edc, card)
        first = edc.purchase([SPINACH], card.pin)
        assert first.approved
        unit, tid = recording.last_unit, edc.config.tid
        link = recording.inner
        answers = []
        for _ in range(2):  # the broker delivering the same request again
            link._client.publish(request_topic(tid), unit, qos=1)
            answers.append(link._responses.get(timeout=5))
        link.close()
    assert answers[0] == answers[1]
    assert world.balance_sen(card) == PERIOD_SEN - SPINACH.total_sen


def _start_switch(db_url: str, broker: Broker, log_path: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, BPNT_DATABASE_URL=db_url, BPNT_MQTT_URL=broker.url,
               BPNT_TCP_ENABLED="false", BPNT_METRICS_PORT="0")
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "switch.cli", "-v", "serve"], env=env,
                                stdout=log_file, stderr=subprocess.STDOUT)
    wait_for(lambda: "subscribed on" in log_path.read_text(errors="replace")
             or proc.poll() is not None, 20, "switch subscribed")
    assert proc.poll() is None, log_path.read_text()
    return proc


def test_two_switch_processes_split_a_shared_subscription(
    world: HostWorld, broker: Broker, tmp_path: Path,
) -> None:
    db_url = str(world.db.engine.url)
    logs = [tmp_path / f"switch{i}.log" for i in range(2)]
    procs = [_start_switch(db_url, broker, log) for log in logs]
    try:
        links = [_mqtt_link(broker, world, i) for i in range(2)]
        edcs = [_edc(world, link, i, timeout_s=10.0) for i, link in enumerate(links)]
        results: list[list[tuple[int, TxnResult]]] = [[], []]
        done: Counter[str] = Counter()
        shoppers = [threading.Thread(target=_shopper, args=(
            world, edcs[i], list(range(6 * i, 6 * i + 6)), 30, results[i], done))
            for i in range(2)]
        for t in shoppers:
            t.start()
        for t in shoppers:
            t.join(120)
            assert not t.is_alive()
        for link in links:
            link.close()
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(15)
    handled = [log.read_text(errors="replace").count("answered a") for log in logs]
    approved_per_card = Counter(i for rs in results for i, r in rs if r.approved)
    assert sum(approved_per_card.values()) == 60, [r.display for rs in results for _, r in rs]
    for index in range(12):
        expected = PERIOD_SEN - SPINACH.total_sen * approved_per_card[index]
        assert world.balance_sen(world.card(index=index)) == expected
    assert all(h > 0 for h in handled), handled  # both switches took a share
    assert sum(handled) >= 60 + 2  # 60 purchases + 2 logons, each answered once
    print(f"units answered per switch process: {handled}")


TERMINAL_SCRIPT = """
import sys, time
from terminal_sim.links.mqtt import MqttLink
link = MqttLink("127.0.0.1", int(sys.argv[1]), sys.argv[2], keepalive_s=int(sys.argv[3]))
assert link.wait_connected(10)
print("connected", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("keepalive_s", [2])
def test_presence_flips_offline_when_a_terminal_process_is_killed(
    world: HostWorld, broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    keepalive_s: int,
) -> None:
    tid = world.terminal().tid
    with serving(world, "mqtt", tmp_path, broker.url):
        terminal = subprocess.Popen(
            [sys.executable, "-c", TERMINAL_SCRIPT, str(broker.port), tid, str(keepalive_s)],
            stdout=subprocess.PIPE)
        try:
            assert terminal.stdout is not None
            assert terminal.stdout.readline().strip() == b"connected"

            def status() -> str | None:
                rows = {r.tid: r.status for r in list_presence(world.db)}
                return rows.get(tid)

            wait_for(lambda: status() == "online", 10, "presence online")
            terminal.kill()
            terminal.wait(10)
            took_s = wait_for(lambda: status() == "offline", 1.5 * keepalive_s,
                              "presence offline within the keep-alive window")
        finally:
            if terminal.poll() is None:
                terminal.kill()
            terminal.wait(10)
    assert switch_cli(["terminals", "--db", str(world.db.engine.url)]) == 0
    listing = capsys.readouterr().out
    assert f"{tid} offline" in listing and "via mqtt" in listing
    print(f"offline {took_s:.2f} s after the kill (keep-alive {keepalive_s} s)")
