"""``/metrics`` of a real ``serve`` (issue 16): real EDCs over TCP and MQTT (our own
Mosquitto), scraped over HTTP and parsed with prometheus-client's own parser.

Every count is checked against what the terminals saw answered, exactly.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from switch.protocol.bpnt import BasketLine
from switch.protocol.framing import frame_tcp
from switch.server import serve
from terminal_sim.card_reader import EmulatedReader
from terminal_sim.edc import Edc, EdcConfig
from terminal_sim.link import Link, TcpLink
from terminal_sim.links.mqtt import MqttLink
from tests.transports.conftest import Broker, LoopThread, free_port, wait_for
from tests.world import HostWorld

SPINACH = BasketLine("SYR001", 1, 300_000)
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@contextmanager
def switch_serving(world: HostWorld, **changes: Any) -> Iterator[dict[str, Any]]:
    """``serve`` on the world's database in a loop thread, until the block ends."""
    settings = world.host.settings.model_copy(update=changes)
    loop = LoopThread()
    ready, stop = asyncio.Event(), asyncio.Event()
    future = asyncio.run_coroutine_threadsafe(
        serve(settings, clock=world.clock, ready=ready, stop=stop), loop.loop)
    try:
        wait_for(lambda: ready.is_set() or future.done(), 20, "switch ready")
        assert not future.done(), future.result()
        yield changes
    finally:
        loop.loop.call_soon_threadsafe(stop.set)
        future.result(30)
        loop.stop()


def scrape(port: int) -> Samples:
    """Every sample of ``/metrics``, by (name, sorted labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over the samples of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


def edc_on(world: HostWorld, link: Link, index: int = 0) -> Edc:
    terminal = world.terminal(index=index)
    return Edc(EdcConfig(terminal.tid, terminal.mid, terminal.tmk, timeout_s=10.0), link,
               EmulatedReader(), clock=world.clock)


def shop(world: HostWorld, edc: Edc) -> dict[tuple[str, str], int]:
    """A logon, 3 purchases, a wrong PIN, a balance inquiry and a request with a bad
    MAC; the answers the terminal got, counted by (request MTI, RC)."""
    seen: dict[tuple[str, str], int] = {}

    def saw(mti: str, rc: str | None) -> None:
        assert rc is not None
        seen[(mti, rc)] = seen.get((mti, rc), 0) + 1

    saw("0800", edc.logon().rc)
    for index in range(3):
        card = world.card(index=index)
        world.insert(edc, card)
        saw("0200", edc.purchase([SPINACH], card.pin).rc)
    card = world.card(index=3)
    world.insert(edc, card)
    saw("0200", edc.purchase([SPINACH], f"{(int(card.pin) + 1) % 10**6:06d}").rc)
    saw("0100", edc.balance_inquiry(card.pin).rc)
    assert edc.last_request is not None
    tampered = edc.last_request.with_fields(de64=b"\x00" * 8)
    saw("0100", edc.resend(tampered, sign=False).opt_text(39))
    return seen


def test_tcp_requests_latency_batches_and_connections(world: HostWorld) -> None:
    port, metrics_port = free_port(), free_port()
    with switch_serving(world, port=port, metrics_port=metrics_port):
        before = scrape(metrics_port)
        assert value(before, "bpnt_connections", transport="tcp") == 0
        assert value(before, "bpnt_db_errors_total", kind="unavailable") == 0
        link = TcpLink("127.0.0.1", port)
        edc = edc_on(world, link)
        seen = shop(world, edc)
        during = scrape(metrics_port)
        assert value(during, "bpnt_connections", transport="tcp") == 1
        link.close()
        wait_for(lambda: value(scrape(metrics_port), "bpnt_connections", transport="tcp") == 0,
                 10, "the connection gauge back to 0")
        # A unit that is no TPDU: the host closes the connection without an answer.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            raw.sendall(frame_tcp(b"\x61\x00\x01\x00\x00\x02\x00" + b"\x00" * 8))
            assert raw.recv(16) == b""  # closed, nothing said
        after = scrape(metrics_port)
    assert seen == {("0800", "00"): 1, ("0200", "00"): 3, ("0200", "55"): 1,
                    ("0100", "00"): 1, ("0100", "63"): 1}
    for (mti, rc), count in seen.items():
        assert value(after, "bpnt_requests_total", mti=mti, rc=rc, transport="tcp") == count
    assert value(after, "bpnt_requests_total", mti="0200", rc="none", transport="tcp") == 1
    requests = total(after, "bpnt_requests_total")
    assert requests == sum(seen.values()) + 1
    for mti in ("0100", "0200", "0800"):
        assert value(after, "bpnt_request_seconds_count", mti=mti, transport="tcp") == \
            total(after, "bpnt_requests_total", mti=mti)
        assert value(after, "bpnt_request_seconds_bucket", mti=mti, transport="tcp",
                     le="+Inf") == total(after, "bpnt_requests_total", mti=mti)
    assert value(after, "bpnt_batch_size_sum") == requests
    assert 1 <= value(after, "bpnt_batch_size_count") <= requests
    assert value(after, "bpnt_batch_seconds_count") == value(after, "bpnt_batch_size_count")
    assert value(after, "bpnt_inflight_requests") == 0
    assert total(after, "bpnt_db_errors_total") == 0
    assert total(after, "bpnt_reversals_total") == 0


def test_a_reversal_is_counted_by_its_answer(world: HostWorld) -> None:
    port, metrics_port = free_port(), free_port()
    with switch_serving(world, port=port, metrics_port=metrics_port):
        link = TcpLink("127.0.0.1", port)
        edc = edc_on(world, link)
        assert edc.logon().approved
        card = world.card()
        world.insert(edc, card)
        assert edc.purchase([SPINACH], card.pin).approved
        assert edc.last_request is not None
        edc.pending_reversal = edc.last_request.with_fields("0400", de52=None, de64=None)
        assert edc.send_pending_reversal()
        link.close()
        after = scrape(metrics_port)
    assert value(after, "bpnt_requests_total", mti="0400", rc="00", transport="tcp") == 1
    assert value(after, "bpnt_reversals_total", rc="00") == 1
    assert total(after, "bpnt_reversals_total") == 1


def test_mqtt_requests_session_and_presence(world: HostWorld, broker: Broker) -> None:
    metrics_port = free_port()
    with switch_serving(world, tcp_enabled=False, mqtt_url=broker.url,
                        metrics_port=metrics_port, mqtt_reconnect_min_s=0.1,
                        mqtt_reconnect_max_s=1.0):
        wait_for(lambda: value(scrape(metrics_port), "bpnt_connections",
                               transport="mqtt") == 1, 10, "the MQTT session up")
        terminal = world.terminal()
        link = MqttLink("127.0.0.1", broker.port, terminal.tid)
        assert link.wait_connected(10)
        wait_for(lambda: value(scrape(metrics_port), "bpnt_mqtt_terminals",
                               status="online") == 1, 10, "the terminal online")
        edc = edc_on(world, link)
        seen = shop(world, edc)
        link.close()
        after = scrape(metrics_port)
    assert seen == {("0800", "00"): 1, ("0200", "00"): 3, ("0200", "55"): 1,
                    ("0100", "00"): 1, ("0100", "63"): 1}
    for (mti, rc), count in seen.items():
        assert value(after, "bpnt_requests_total", mti=mti, rc=rc, transport="mqtt") == count
    assert total(after, "bpnt_requests_total") == sum(seen.values())
    assert total(after, "bpnt_request_seconds_count") == sum(seen.values())
    assert value(after, "bpnt_batch_size_sum") == sum(seen.values())
    assert value(after, "bpnt_inflight_requests") == 0


def test_port_zero_serves_no_metrics(world: HostWorld, caplog: pytest.LogCaptureFixture,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    caplog.set_level(logging.INFO, logger="bpnt.metrics")
    with switch_serving(world, port=port, metrics_port=0):
        edc = edc_on(world, TcpLink("127.0.0.1", port))
        assert edc.logon().approved
        edc.link.close()
    assert "metrics off" in caplog.text
    assert "metrics on" not in capsys.readouterr().out


def test_a_taken_port_is_logged_and_payments_go_on(
        world: HostWorld, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        taken_port = taken.getsockname()[1]
        with switch_serving(world, port=port, metrics_port=taken_port):
            edc = edc_on(world, TcpLink("127.0.0.1", port))
            card = world.card()
            world.insert(edc, card)
            assert edc.purchase([SPINACH], card.pin).approved
            edc.link.close()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR
              and r.name == "bpnt.metrics"]
    assert len(errors) == 1 and f":{taken_port} " in errors[0].getMessage(), caplog.text
