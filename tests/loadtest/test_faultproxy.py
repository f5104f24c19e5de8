"""The fault proxy (loadtest/faultproxy): every toxic each way over real loopback
sockets, Toxiproxy's HTTP API shapes and codes, the CLI, and a purchase through it to a
real TCP switch (FAILURES F8, F13).

Timings are asserted as lower bounds (a toxic makes things at least that slow); an
"absent" (blackholed) answer is a read that must time out, kept short.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from loadtest.faultproxy import (
    AlreadyExists,
    BadRequest,
    FaultProxy,
    NotFound,
    Proxy,
    ThreadedFaultProxy,
    ToxiproxyClient,
)
from switch.protocol.bpnt import BasketLine
from terminal_sim.card_reader import EmulatedReader
from terminal_sim.edc import Edc, EdcConfig
from terminal_sim.link import TcpLink
from tests.transports.conftest import serving
from tests.world import PERIOD_SEN, HostWorld

T = TypeVar("T")
STREAMS = ["upstream", "downstream"]
WAIT_S = 5.0
#: How long a blackholed read is given to (wrongly) return something.
SILENCE_S = 0.3
PAYLOAD = b"0200 purchase request, or its answer\n"
RICE = BasketLine("BRS005", 1, 6_500_000)
WORKTREE = Path(__file__).resolve().parents[2]


def run(main: Coroutine[Any, Any, T], timeout_s: float = 20.0) -> T:
    return asyncio.run(asyncio.wait_for(main, timeout_s))


@dataclass
class Received:
    """What one connection to the echo upstream got, in how many reads."""

    data: bytearray = field(default_factory=bytearray)
    reads: int = 0
    closed: bool = False


class Echo:
    """A loopback upstream that echoes every read back and records it."""

    def __init__(self) -> None:
        self.connections: list[Received] = []
        self._changed = asyncio.Condition()
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def wait(self, condition: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(condition), timeout_s)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received = Received()
        self.connections.append(received)
        try:
            while data := await reader.read(65536):
                received.data += data
                received.reads += 1
                await self._notify()
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            received.closed = True
            writer.close()
            await self._notify()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()


@asynccontextmanager
async def proxied() -> AsyncIterator[tuple[FaultProxy, Proxy, Echo]]:
    """A fault proxy with one proxy ``echo`` in front of an echo upstream."""
    echo = Echo()
    upstream = await echo.start()
    try:
        async with FaultProxy(seed=8583) as fp:
            yield fp, await fp.create_proxy("echo", upstream), echo
    finally:
        echo.close()


async def connect(proxy: Proxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", proxy.listen_port)


async def round_trip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     data: bytes = PAYLOAD) -> float:
    """Seconds for ``data`` to come back through the echo."""
    start = time.monotonic()
    writer.write(data)
    assert await asyncio.wait_for(reader.readexactly(len(data)), WAIT_S) == data
    return time.monotonic() - start


async def read_until(reader: asyncio.StreamReader, size: int | None) -> tuple[bytes, int]:
    """``size`` bytes (None: until EOF) and the number of reads they took."""
    data, reads = bytearray(), 0
    async with asyncio.timeout(WAIT_S):
        while size is None or len(data) < size:
            chunk = await reader.read(65536)
            if not chunk:
                break
            data += chunk
            reads += 1
    return bytes(data), reads


async def silent(reader: asyncio.StreamReader) -> bool:
    """True if nothing (not even an EOF) arrives within SILENCE_S."""
    try:
        await asyncio.wait_for(reader.read(1), SILENCE_S)
    except TimeoutError:
        return True
    return False


# -- each toxic, each way ----------------------------------------------------------------

@pytest.mark.parametrize("stream", STREAMS)
@pytest.mark.parametrize(("latency_ms", "jitter_ms"), [(150, 0), (150, 40)])
def test_latency_delays_the_stream(stream: str, latency_ms: int, jitter_ms: int) -> None:
    async def main() -> None:
        async with proxied() as (fp, proxy, _):
            reader, writer = await connect(proxy)
            await fp.add_toxic("echo", "latency", stream=stream,
                               attributes={"latency": latency_ms, "jitter": jitter_ms})
            for _ in range(2):
                assert await round_trip(reader, writer) >= (latency_ms - jitter_ms) / 1000
            writer.close()

    run(main())


@pytest.mark.parametrize("stream", STREAMS)
def test_bandwidth_bounds_bytes_per_second(stream: str) -> None:
    rate_kb_s, size = 100, 30_000  # 100 KB/s: 30 000 bytes take >= 0.3 s

    async def main() -> None:
        async with proxied() as (fp, proxy, _):
            await fp.add_toxic("echo", "bandwidth", stream=stream,
                               attributes={"rate": rate_kb_s})
            reader, writer = await connect(proxy)
            payload = os.urandom(size)
            elapsed = await round_trip(reader, writer, payload)
            assert size / elapsed <= rate_kb_s * 1000 * 1.1, f"{size / elapsed:.0f} B/s"
            writer.close()

    run(main())


@pytest.mark.parametrize("stream", STREAMS)
def test_slicer_delivers_in_several_chunks_with_every_byte(stream: str) -> None:
    payload = os.urandom(3000)

    async def main() -> None:
        async with proxied() as (fp, proxy, echo):
            await fp.add_toxic("echo", "slicer", stream=stream, attributes={
                "average_size": 100, "size_variation": 30, "delay": 2000})
            reader, writer = await connect(proxy)
            writer.write(payload)
            data, client_reads = await read_until(reader, len(payload))
            assert data == payload
            upstream = echo.connections[0]
            assert bytes(upstream.data) == payload
            sliced_reads = upstream.reads if stream == "upstream" else client_reads
            assert sliced_reads >= 5, f"{sliced_reads} reads: not sliced"
            writer.close()

    run(main())


@pytest.mark.parametrize("stream", STREAMS)
def test_limit_data_closes_after_the_limit(stream: str) -> None:
    async def main() -> None:
        async with proxied() as (fp, proxy, echo):
            await fp.add_toxic("echo", "limit_data", stream=stream, attributes={"bytes": 100})
            reader, writer = await connect(proxy)
            writer.write(os.urandom(300))
            data, _ = await read_until(reader, None)  # to the EOF
            await echo.wait(lambda: bool(echo.connections) and echo.connections[0].closed)
            upstream = echo.connections[0]
            if stream == "upstream":
                assert len(upstream.data) == 100 and len(data) <= 100
            else:
                assert len(upstream.data) == 300 and len(data) == 100
            writer.close()

    run(main())


@pytest.mark.parametrize("stream", STREAMS)
def test_reset_peer_resets_the_connection(stream: str) -> None:
    async def main() -> None:
        async with proxied() as (fp, proxy, _):
            await fp.add_toxic("echo", "reset_peer", stream=stream, attributes={"timeout": 100})
            reader, writer = await connect(proxy)
            start = time.monotonic()
            writer.write(PAYLOAD)
            with pytest.raises(ConnectionResetError):
                await read_until(reader, None)
            assert time.monotonic() - start >= 0.1
            writer.close()

    run(main())


@pytest.mark.parametrize("stream", STREAMS)
def test_timeout_zero_blackholes_until_removed_then_closes(stream: str) -> None:
    """Toxiproxy's semantics: data dropped, the connection held open while the toxic is
    there; removing it closes the connections it held; new ones are clean."""
    async def main() -> None:
        async with proxied() as (fp, proxy, echo):
            reader, writer = await connect(proxy)
            await round_trip(reader, writer)
            await fp.add_toxic("echo", "timeout", stream=stream, attributes={"timeout": 0})
            writer.write(b"lost")
            if stream == "downstream":  # the request gets there, the answer is lost
                await echo.wait(lambda: echo.connections[0].data.endswith(b"lost"))
            assert await silent(reader)
            assert not echo.connections[0].data.endswith(b"lost") or stream == "downstream"
            await fp.remove_toxic("echo", f"timeout_{stream}")
            assert await read_until(reader, None) == (b"", 0)  # closed by the removal
            writer.close()
            reader, writer = await connect(proxy)
            await round_trip(reader, writer)
            writer.close()

    run(main())


@pytest.mark.parametrize("stream", STREAMS)
def test_timeout_closes_after_the_timeout(stream: str) -> None:
    async def main() -> None:
        async with proxied() as (fp, proxy, _):
            await fp.add_toxic("echo", "timeout", stream=stream, attributes={"timeout": 200})
            reader, writer = await connect(proxy)
            start = time.monotonic()
            writer.write(PAYLOAD)
            assert await read_until(reader, None) == (b"", 0)
            assert time.monotonic() - start >= 0.2
            writer.close()

    run(main())


@pytest.mark.parametrize("stream", STREAMS)
def test_slow_close_delays_the_close(stream: str) -> None:
    async def main() -> None:
        async with proxied() as (fp, proxy, _):
            await fp.add_toxic("echo", "slow_close", stream=stream, attributes={"delay": 300})
            reader, writer = await connect(proxy)
            await round_trip(reader, writer)  # data is not held back
            start = time.monotonic()
            writer.write_eof()
            assert await read_until(reader, None) == (b"", 0)
            assert time.monotonic() - start >= 0.3
            writer.close()

    run(main())


def test_no_toxic_passes_megabytes_intact_in_both_directions() -> None:
    """Flow control: more than the proxy buffers per link, echoed while still sending."""
    payload = os.urandom(4 * 1024 * 1024)

    async def main() -> None:
        async with proxied() as (fp, proxy, _):
            await fp.add_toxic("echo", "latency", attributes={"latency": 5})
            reader, writer = await connect(proxy)

            async def send() -> None:
                writer.write(payload)
                await writer.drain()

            sending = asyncio.create_task(send())
            data, _ = await read_until(reader, len(payload))
            await sending
            assert data == payload
            writer.close()

    run(main())


def test_an_unreachable_upstream_closes_the_client() -> None:
    async def main() -> None:
        async with FaultProxy() as fp:
            proxy = await fp.create_proxy("edc", f"127.0.0.1:{free_port()}")  # nothing there
            reader, writer = await connect(proxy)
            assert await read_until(reader, None) == (b"", 0)
            writer.close()

    run(main())


def test_toxicity_zero_never_applies_and_a_half_splits_connections() -> None:
    async def outcome(proxy: Proxy) -> str:
        reader, writer = await connect(proxy)
        writer.write(PAYLOAD)
        try:
            data, _ = await read_until(reader, len(PAYLOAD))
        except ConnectionResetError:
            return "reset"
        finally:
            writer.close()
        return "echoed" if data == PAYLOAD else "short"

    async def main() -> None:
        async with proxied() as (fp, proxy, _):
            await fp.add_toxic("echo", "reset_peer", toxicity=0.0, attributes={"timeout": 0})
            assert [await outcome(proxy) for _ in range(8)] == ["echoed"] * 8
            await fp.update_toxic("echo", "reset_peer_downstream", toxicity=0.5)
            seen = {await outcome(proxy) for _ in range(16)}
            assert seen == {"echoed", "reset"}

    run(main())


def test_toxics_switched_at_run_time_act_on_an_open_connection() -> None:
    async def main() -> None:
        async with proxied() as (fp, proxy, _):
            reader, writer = await connect(proxy)
            assert await round_trip(reader, writer) < 0.3
            await fp.add_toxic("echo", "latency", attributes={"latency": 300})
            assert await round_trip(reader, writer) >= 0.3
            await fp.update_toxic("echo", "latency_downstream", attributes={"latency": 600})
            assert await round_trip(reader, writer) >= 0.6
            await fp.remove_toxic("echo", "latency_downstream")
            assert await round_trip(reader, writer) < 0.3
            writer.close()

    run(main())


def test_disabling_closes_connections_and_refuses_new_ones() -> None:
    async def main() -> None:
        async with proxied() as (fp, proxy, _):
            reader, writer = await connect(proxy)
            await round_trip(reader, writer)
            port = proxy.listen_port
            await fp.update_proxy("echo", enabled=False)
            assert await read_until(reader, None) == (b"", 0)
            writer.close()
            with pytest.raises(ConnectionRefusedError):
                await connect(proxy)
            await fp.reset()  # enables it again, on the same port
            assert proxy.enabled and proxy.listen_port == port
            reader, writer = await connect(proxy)
            await round_trip(reader, writer)
            writer.close()

    run(main())


@pytest.mark.parametrize("listen", ["0.0.0.0:0", "[::]:0", ":0", "example.com:0", "10.0.0.7:0"])
def test_a_listen_address_off_loopback_is_refused(listen: str) -> None:
    async def main() -> None:
        async with FaultProxy() as fp:
            with pytest.raises(BadRequest, match="listen"):
                await fp.create_proxy("edc", "127.0.0.1:8583", listen=listen)
            with pytest.raises(BadRequest, match="API address"):
                await fp.start_api(listen)
            assert fp.proxies() == {}

    run(main())


@pytest.mark.parametrize("upstream", ["192.168.1.10:8583", "switch.example:8583",
                                      "[2001:db8::1]:8583", "127.0.0.1:0", "127.0.0.1"])
def test_an_upstream_off_loopback_is_refused(upstream: str) -> None:
    async def main() -> None:
        async with FaultProxy() as fp:
            with pytest.raises(BadRequest, match="upstream"):
                await fp.create_proxy("edc", upstream)

    run(main())


@pytest.mark.parametrize(("body", "message"), [
    ({"type": "latency", "attributes": {"latency": -1}}, "bad request body"),
    ({"type": "latency", "attributes": {"latency": "1s"}}, "bad request body"),
    ({"type": "slicer", "attributes": {"average_size": 0}}, "bad request body"),
    ({"type": "slicer", "attributes": {"average_size": 10, "size_variation": 10}},
     "bad request body"),
    ({"type": "latency", "toxicity": 1.5}, "bad request body"),
    ({"type": "jam"}, "invalid toxic type"),
    ({"type": "latency", "stream": "sideways"}, "stream was invalid"),
])
def test_bad_toxics_are_refused(body: dict[str, Any], message: str) -> None:
    async def main() -> None:
        async with proxied() as (fp, _, _):
            with pytest.raises(BadRequest, match=message):
                await fp.add_toxic_json("echo", body)
            assert fp.toxics("echo") == []

    run(main())


# -- the HTTP API: Toxiproxy's paths, JSON and codes ----------------------------------------

PROXY_KEYS = ["name", "listen", "upstream", "enabled", "toxics"]
TOXIC_KEYS = ["attributes", "name", "type", "stream", "toxicity"]


class Api:
    """Raw HTTP to the API: (status, decoded JSON or None)."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=WAIT_S)

    def __call__(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
                 headers: dict[str, str] | None = None) -> tuple[int, Any]:
        payload = raw if raw is not None else None if body is None else json.dumps(body)
        self.conn.request(method, path, body=payload, headers=headers or {})
        response = self.conn.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data else None

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def api() -> Any:
    with ThreadedFaultProxy(seed=1) as fp:
        client = Api(fp.api_address)
        try:
            yield client
        finally:
            client.close()


def test_api_proxy_routes(api: Api) -> None:
    status, version = api("GET", "/version")
    assert status == 200 and version["version"] == "2.12.0"
    status, created = api("POST", "/proxies", {"name": "edc", "upstream": "127.0.0.1:8583"})
    assert status == 201 and list(created) == PROXY_KEYS
    assert created["listen"].startswith("127.0.0.1:") and created["listen"] != "127.0.0.1:0"
    assert created["enabled"] is True and created["toxics"] == []
    assert api("POST", "/proxies", {"name": "edc", "upstream": "127.0.0.1:8583"}) == (
        409, {"error": "proxy already exists", "status": 409})
    assert api("GET", "/proxies") == (200, {"edc": created})
    assert api("GET", "/proxies/edc") == (200, created)
    status, disabled = api("POST", "/proxies/edc", {"enabled": False})
    assert status == 200 and disabled == created | {"enabled": False}
    status, enabled = api("PATCH", "/proxies/edc", {"enabled": True})
    assert status == 200 and enabled["enabled"] is True
    status, moved = api("POST", "/proxies/edc", {"upstream": "localhost:8584"})
    assert status == 200 and moved["upstream"] == "localhost:8584"
    assert api("DELETE", "/proxies/edc") == (204, None)
    assert api("GET", "/proxies/edc") == (404, {"error": "proxy not found", "status": 404})
    assert api("DELETE", "/proxies/edc")[0] == 404
    assert api("POST", "/proxies/edc", {"enabled": True})[0] == 404


def test_api_toxic_routes(api: Api) -> None:
    api("POST", "/proxies", {"name": "edc", "upstream": "127.0.0.1:8583"})
    status, toxic = api("POST", "/proxies/edc/toxics",
                        {"type": "latency", "attributes": {"latency": 300}})
    assert status == 200 and list(toxic) == TOXIC_KEYS  # Toxiproxy answers 200, not 201
    assert toxic == {"attributes": {"latency": 300, "jitter": 0}, "name": "latency_downstream",
                     "type": "latency", "stream": "downstream", "toxicity": 1.0}
    assert api("POST", "/proxies/edc/toxics", {"type": "latency"}) == (
        409, {"error": "toxic already exists", "status": 409})
    status, cut = api("POST", "/proxies/edc/toxics", {
        "name": "cut", "type": "limit_data", "stream": "upstream", "toxicity": 0.5,
        "attributes": {"bytes": 64}})
    assert status == 200 and cut["stream"] == "upstream" and cut["toxicity"] == 0.5
    assert api("GET", "/proxies/edc/toxics") == (200, [cut, toxic])  # upstream first
    assert api("GET", "/proxies/edc")[1]["toxics"] == [cut, toxic]
    assert api("GET", "/proxies/edc/toxics/cut") == (200, cut)
    status, slower = api("POST", "/proxies/edc/toxics/latency_downstream",
                         {"attributes": {"jitter": 50}})
    assert status == 200 and slower["attributes"] == {"latency": 300, "jitter": 50}
    status, rarer = api("PATCH", "/proxies/edc/toxics/cut", {"toxicity": 0.25})
    assert status == 200 and rarer == cut | {"toxicity": 0.25}
    assert api("DELETE", "/proxies/edc/toxics/cut") == (204, None)
    assert api("GET", "/proxies/edc/toxics/cut") == (
        404, {"error": "toxic not found", "status": 404})
    assert api("DELETE", "/proxies/edc/toxics/cut")[0] == 404
    assert api("POST", "/proxies/edc/toxics/cut", {"toxicity": 1})[0] == 404
    assert api("GET", "/proxies/nope/toxics")[0] == 404
    assert api("POST", "/proxies/nope/toxics", {"type": "latency"})[0] == 404


def test_api_populate_and_reset(api: Api) -> None:
    port = free_port()
    config = [{"name": "edc", "listen": f"localhost:{port}", "upstream": "127.0.0.1:8583"},
              {"name": "spare", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:8584",
               "enabled": False}]
    status, first = api("POST", "/populate", config)
    assert status == 201 and [p["name"] for p in first["proxies"]] == ["edc", "spare"]
    assert first["proxies"][0]["listen"] == f"127.0.0.1:{port}"
    assert first["proxies"][1]["enabled"] is False
    api("POST", "/proxies/edc/toxics", {"type": "timeout", "attributes": {"timeout": 0}})
    status, again = api("POST", "/populate", config[:1])  # unchanged: left as it is
    assert status == 201 and again["proxies"][0]["toxics"][0]["type"] == "timeout"
    assert api("POST", "/reset") == (204, None)
    proxies = api("GET", "/proxies")[1]
    assert all(p["enabled"] and p["toxics"] == [] for p in proxies.values())
    status, error = api("POST", "/populate", [{"name": "x", "upstream": "127.0.0.1:1"},
                                              {"upstream": "127.0.0.1:2"}])
    assert status == 400 and error["error"] == "missing required field: name at proxy 2"
    assert "x" not in api("GET", "/proxies")[1]  # checked before anything is created
    status, error = api("POST", "/populate", [{"name": "x", "upstream": "10.0.0.1:80"}])
    assert status == 400 and "loopback" in error["error"]


@pytest.mark.parametrize(("method", "path", "body", "status", "error"), [
    ("POST", "/proxies", {"upstream": "127.0.0.1:1"}, 400, "missing required field: name"),
    ("POST", "/proxies", {"name": "a"}, 400, "missing required field: upstream"),
    ("POST", "/proxies", {"name": "a", "upstream": "8.8.8.8:53"}, 400, "not a loopback"),
    ("POST", "/proxies", {"name": "a", "upstream": "127.0.0.1:1", "listen": "0.0.0.0:0"},
     400, "not a loopback"),
    ("POST", "/proxies", [1, 2], 400, "bad request body"),
    ("GET", "/nowhere", None, 404, "not found"),
    ("GET", "/proxies/", None, 404, "not found"),
    ("PUT", "/proxies", {}, 405, "method not allowed"),
    ("GET", "/reset", None, 405, "method not allowed"),
])
def test_api_errors(api: Api, method: str, path: str, body: Any, status: int,
                    error: str) -> None:
    got_status, got = api(method, path, body)
    assert got_status == status and got["status"] == status and error in got["error"]


def test_api_refuses_bad_bodies_and_browsers_and_survives_garbage(api: Api) -> None:
    status, error = api("POST", "/proxies", raw=b"{not json")
    assert status == 400 and error["error"].startswith("bad request body")
    assert api("POST", "/proxies", raw=b"")[1]["error"] == "bad request body: EOF"
    assert api("GET", "/version", headers={"User-Agent": "Mozilla/5.0"})[0] == 403
    host, port = api.conn.host, api.conn.port
    with socket.create_connection((host, port), timeout=WAIT_S) as sock:
        sock.sendall(b"\x16\x03\x01 this is not HTTP\r\n\r\n")
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400 ") and b'"status": 400' in answer
    assert api("GET", "/version")[0] == 200  # the same keep-alive connection, still served


def test_client_round_trips_like_toxiproxy_python() -> None:
    with ThreadedFaultProxy() as fp:
        client = fp.client()
        assert client.running() and client.version() == "2.12.0"
        proxy = client.create(upstream="127.0.0.1:8583", name="edc")
        with pytest.raises(AlreadyExists):
            client.create(upstream="127.0.0.1:8583", name="edc")
        toxic = proxy.add_toxic("slicer", stream="upstream",
                                attributes={"average_size": 8, "delay": 10})
        assert toxic.name == "slicer_upstream" and toxic.attributes["size_variation"] == 0
        assert proxy.update_toxic("slicer_upstream", toxicity=0.5).toxicity == 0.5
        assert list(proxy.toxics()) == ["slicer_upstream"]
        proxy.disable()
        assert not client.get_proxy("edc").enabled
        client.reset()
        assert client.get_proxy("edc").enabled and client.get_proxy("edc").toxics() == {}
        with pytest.raises(NotFound):
            proxy.destroy_toxic("slicer_upstream")
        assert [p.name for p in client.populate([{"name": "edc", "listen": proxy.listen,
                                                  "upstream": "127.0.0.1:8583"}])] == ["edc"]
        proxy.destroy()
        assert client.proxies() == {}
        with pytest.raises(NotFound):
            client.get_proxy("edc")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- the command line -------------------------------------------------------------------------

def test_cli_serves_the_config_and_stops_by_itself(tmp_path: Path) -> None:
    api_port, listen_port = free_port(), free_port()
    config = tmp_path / "proxies.json"
    config.write_text(json.dumps([{"name": "edc", "listen": f"127.0.0.1:{listen_port}",
                                   "upstream": "127.0.0.1:8583"}]))
    with subprocess.Popen(
            [sys.executable, "-m", "loadtest.faultproxy", "--api", f"127.0.0.1:{api_port}",
             "--config", str(config), "--max-runtime-s", "2"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=WORKTREE,
            env=os.environ | {"PYTHONPATH": str(WORKTREE)}) as proc:
        assert proc.stdout is not None
        try:
            ready, _, _ = select.select([proc.stdout], [], [], 15)
            assert ready, "no ready line within 15 s"
            line = proc.stdout.readline().decode()
            assert f"API on http://127.0.0.1:{api_port}" in line, line
            client = ToxiproxyClient("127.0.0.1", api_port)
            assert client.get_proxy("edc").listen == f"127.0.0.1:{listen_port}"
        except BaseException:
            proc.kill()
            raise
        try:
            assert proc.wait(15) == 0  # --max-runtime-s 2
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def test_cli_refuses_an_api_off_loopback() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.faultproxy", "--api", "0.0.0.0:8474",
         "--max-runtime-s", "1"],
        capture_output=True, text=True, timeout=30, cwd=WORKTREE,
        env=os.environ | {"PYTHONPATH": str(WORKTREE)})
    assert done.returncode == 2 and "not a loopback address" in done.stderr


# -- through the real switch (FAILURES F8, F13) --------------------------------------------------

def edc_through(world: HostWorld, port: int, timeout_s: float) -> Edc:
    terminal = world.terminal()
    config = EdcConfig(terminal.tid, terminal.mid, terminal.tmk, timeout_s=timeout_s)
    return Edc(config, TcpLink("127.0.0.1", port), EmulatedReader(), clock=world.clock)


def test_purchase_through_the_proxy_to_a_real_switch(world: HostWorld, tmp_path: Path) -> None:
    """Latency: the purchase is slower and approved.  Downstream blackhole: the host
    debits, the EDC times out holding a reversal (F13); once the toxic is gone the
    reversal goes first and the balance is restored."""
    with serving(world, "tcp", tmp_path) as linked, ThreadedFaultProxy() as fp:
        proxy = fp.client().create(upstream=linked.url.removeprefix("tcp://"), name="edc")
        edc = edc_through(world, proxy.listen_port, timeout_s=2.0)
        card = world.card()
        world.insert(edc, card)
        try:
            proxy.add_toxic("latency", attributes={"latency": 200})
            start = time.monotonic()
            assert edc.ensure_logged_on()
            assert edc.purchase([RICE], card.pin).approved
            assert time.monotonic() - start >= 0.4  # logon and purchase, 200 ms each
            assert world.balance_sen(card) == PERIOD_SEN - RICE.total_sen
            proxy.destroy_toxic("latency_downstream")

            proxy.add_toxic("timeout", name="answers_lost", attributes={"timeout": 0})
            lost = edc.purchase([RICE], card.pin)
            assert lost.timed_out and edc.pending_reversal is not None
            assert world.balance_sen(card) == PERIOD_SEN - 2 * RICE.total_sen  # debited
            proxy.destroy_toxic("answers_lost")

            inquiry = edc.balance_inquiry(card.pin)  # the reversal goes first
            assert edc.pending_reversal is None
            assert inquiry.balance_sen == world.balance_sen(card) == PERIOD_SEN - RICE.total_sen
        finally:
            edc.link.close()
