"""MQTT back-pressure against a real Mosquitto (our own, on a free loopback port).

50 terminals flood a switch whose window is 2 requests (``mqtt_max_inflight``): the
switch takes a request off the broker (PUBACK) only when it has room for it, the broker
holds the rest (MQTT 5 Receive Maximum), and every request is answered; nothing is shed.
An out-of-spec QoS 0 flood, which the broker cannot hold back, overflows the switch's
bounded queue: each request shed is logged and counted, never acknowledged, and its
terminal's reversal settles it.  The money invariant is checked after each test.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from switch.transports.mqtt import MqttTransport
from switch.transports.mqtt_flow import RECEIVE_MAXIMUM
from terminal_sim.mqtt_flood import FLOOD_BASKET, FloodReport, run_flood
from tests.transports.conftest import Broker, serving, wait_for
from tests.world import PERIOD_SEN, HostWorld, make_world

TERMINALS = 50
REQUESTS = 40
#: Enough QoS 0 terminals at once to overflow 2 slots and 2 places in the queue.
QOS0_TERMINALS = 20
#: The switch's window: far fewer than the terminals flooding it.
SWITCH_INFLIGHT = 2


def _flood_world(tmp_path: Path, *, terminals: int) -> Iterator[HostWorld]:
    """tests.world.make_world with a terminal and a card for each flooding terminal,
    and a switch window of :data:`SWITCH_INFLIGHT`."""
    yield from make_world(tmp_path, kpm_count=terminals, terminal_count=terminals,
                          mqtt_max_inflight=SWITCH_INFLIGHT)


@pytest.fixture
def flood_world(tmp_path: Path) -> Iterator[HostWorld]:
    yield from _flood_world(tmp_path, terminals=TERMINALS)


def _accounted(transport: MqttTransport, report: FloodReport) -> dict[str, int]:
    """The switch's counters once every request the terminals published is accounted
    for: answered, shed or unanswered (a late one may still be on its way: bounded)."""

    def settled() -> bool:
        c = transport.counters()
        return c["units_handled"] + c["requests_shed"] + c["requests_unanswered"] \
            >= report.requests_sent

    with contextlib.suppress(AssertionError):
        wait_for(settled, 10, "every request accounted for")
    return transport.counters()


def _assert_money(world: HostWorld, report: FloodReport) -> None:
    """Each approval one debit; each reversed purchase net zero."""
    for history in report.histories:
        card = world.card(index=history.card_index)
        assert world.balance_sen(card) == PERIOD_SEN - history.approved_sen, history.tid


def test_a_flood_on_a_small_window_is_held_by_the_broker_and_all_answered(
    flood_world: HostWorld, broker: Broker, tmp_path: Path,
) -> None:
    world = flood_world
    with serving(world, "mqtt", tmp_path, broker.url) as linked:
        transport = linked.transport
        assert isinstance(transport, MqttTransport)
        report = run_flood(world.demo, world.keys.imk_ac, "127.0.0.1", broker.port,
                           terminals=TERMINALS, requests=REQUESTS, timeout_s=15.0,
                           clock=world.clock)
        counters = _accounted(transport, report)
    print(report.verdict(), counters)
    assert not [h.error for h in report.histories if h.error], report.verdict()
    assert report.purchases == TERMINALS * REQUESTS
    assert report.answered == report.purchases, report.verdict()
    assert report.outcomes() == {"approved": report.purchases}
    assert counters["requests_shed"] == 0 and counters["requests_unanswered"] == 0
    assert counters["units_handled"] == report.requests_sent  # nothing acked and dropped
    # The broker kept the switch's receive window (1): never more waiting in the switch.
    assert counters["most_waiting"] <= RECEIVE_MAXIMUM
    # A flood: the switch's slots filled and requests waited for room (in the broker).
    assert counters["most_taken"] == SWITCH_INFLIGHT and counters["waits_for_room"] > 0
    _assert_money(world, report)
    assert all(h.approved_sen == REQUESTS * FLOOD_BASKET[0].total_sen for h in report.histories)


def test_a_qos0_flood_is_shed_visibly_and_settled_by_reversals(
    flood_world: HostWorld, broker: Broker, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = flood_world
    caplog.set_level(logging.WARNING, logger="bpnt.mqtt")
    with serving(world, "mqtt", tmp_path, broker.url) as linked:
        transport = linked.transport
        assert isinstance(transport, MqttTransport)
        report = run_flood(world.demo, world.keys.imk_ac, "127.0.0.1", broker.port,
                           terminals=QOS0_TERMINALS, requests=2, timeout_s=1.5,
                           request_qos=0, clock=world.clock)
        counters = _accounted(transport, report)
    print(report.verdict(), counters)
    shed_logged = [r for r in caplog.records if "shed" in r.getMessage()]
    assert counters["requests_shed"] > 0, "a QoS 0 flood on a window of 2 shed nothing"
    assert len(shed_logged) == counters["requests_shed"]
    assert report.timed_out > 0
    assert counters["status_shed"] == 0  # QoS 1 keeps its places: never shed
    # Nothing vanished: every request published was answered or shed (and logged).
    assert counters["units_handled"] + counters["requests_shed"] == report.requests_sent
    assert not report.unsettled, report.verdict()
    _assert_money(world, report)
