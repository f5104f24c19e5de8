"""Toxiproxy's HTTP API (paths, verbs, JSON, status codes) over asyncio streams + h11.

A malformed request gets 400 with ``{"error": ..., "status": 400}`` and the connection
is closed; an error inside a route gets 500 the same way; neither stops the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import h11

from loadtest.faultproxy.errors import ApiError, bad_body
from loadtest.faultproxy.service import FaultProxy, PopulateError

log = logging.getLogger(__name__)

#: The Toxiproxy release whose API this follows (``GET /version``).
TOXIPROXY_VERSION = "2.12.0"
MAX_BODY_BYTES = 1024 * 1024
READ_TIMEOUT_S = 15.0  # Toxiproxy's read_timeout

Reply = tuple[int, Any]  # (status, JSON value or None for no body)
Handler = Callable[[FaultProxy, list[str], bytes], Awaitable[Reply]]


@dataclass
class Request:
    method: str
    target: str
    user_agent: str
    body: bytes


class BodyTooLarge(Exception):
    pass


def _json(body: bytes) -> Any:
    if not body.strip():
        raise bad_body("EOF")  # what Go's decoder says of an empty body
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_body(str(exc)) from None


# -- routes ----------------------------------------------------------------------------

async def version(fp: FaultProxy, _: list[str], __: bytes) -> Reply:
    return 200, {"version": TOXIPROXY_VERSION, "server": "bpnt-faultproxy"}


async def reset(fp: FaultProxy, _: list[str], __: bytes) -> Reply:
    await fp.reset()
    return 204, None


async def proxy_index(fp: FaultProxy, _: list[str], __: bytes) -> Reply:
    return 200, {name: proxy.to_json() for name, proxy in fp.proxies().items()}


async def proxy_create(fp: FaultProxy, _: list[str], body: bytes) -> Reply:
    return 201, (await fp.create_proxy_json(_json(body))).to_json()


async def populate(fp: FaultProxy, _: list[str], body: bytes) -> Reply:
    try:
        proxies = await fp.populate(_json(body))
    except PopulateError as exc:
        return exc.status, exc.to_json() | {"proxies": [p.to_json() for p in exc.proxies]}
    except ApiError as exc:
        return exc.status, exc.to_json() | {"proxies": None}
    return 201, {"proxies": [p.to_json() for p in proxies]}


async def proxy_show(fp: FaultProxy, params: list[str], _: bytes) -> Reply:
    return 200, fp.get_proxy(params[0]).to_json()


async def proxy_update(fp: FaultProxy, params: list[str], body: bytes) -> Reply:
    fp.get_proxy(params[0])  # 404 before the body is looked at, as Toxiproxy
    return 200, (await fp.update_proxy_json(params[0], _json(body))).to_json()


async def proxy_delete(fp: FaultProxy, params: list[str], _: bytes) -> Reply:
    await fp.delete_proxy(params[0])
    return 204, None


async def toxic_index(fp: FaultProxy, params: list[str], _: bytes) -> Reply:
    return 200, [t.to_json() for t in fp.toxics(params[0])]


async def toxic_create(fp: FaultProxy, params: list[str], body: bytes) -> Reply:
    fp.get_proxy(params[0])
    return 200, (await fp.add_toxic_json(params[0], _json(body))).to_json()


async def toxic_show(fp: FaultProxy, params: list[str], _: bytes) -> Reply:
    return 200, fp.get_toxic(params[0], params[1]).to_json()


async def toxic_update(fp: FaultProxy, params: list[str], body: bytes) -> Reply:
    fp.get_toxic(params[0], params[1])
    return 200, (await fp.update_toxic_json(params[0], params[1], _json(body))).to_json()


async def toxic_delete(fp: FaultProxy, params: list[str], _: bytes) -> Reply:
    await fp.remove_toxic(params[0], params[1])
    return 204, None


ROUTES: dict[str, dict[str, Handler]] = {
    "version": {"GET": version},
    "reset": {"POST": reset},
    "proxies": {"GET": proxy_index, "POST": proxy_create},
    "populate": {"POST": populate},
    "proxy": {"GET": proxy_show, "POST": proxy_update, "PATCH": proxy_update,
              "DELETE": proxy_delete},
    "toxics": {"GET": toxic_index, "POST": toxic_create},
    "toxic": {"GET": toxic_show, "POST": toxic_update, "PATCH": toxic_update,
              "DELETE": toxic_delete},
}


def route(path: str) -> tuple[str, list[str]] | None:
    """The route a path names and its parameters (percent-decoded).

    >>> route("/proxies/edc%2D1/toxics/latency_downstream")
    ('toxic', ['edc-1', 'latency_downstream'])
    >>> route("/proxies/") is None
    True
    """
    parts = [unquote(p) for p in path.split("/")[1:]] if path.startswith("/") else []
    if any(not p for p in parts):
        return None
    match parts:
        case ["version" | "reset" | "proxies" | "populate" as name]:
            return name, []
        case ["proxies", proxy]:
            return "proxy", [proxy]
        case ["proxies", proxy, "toxics"]:
            return "toxics", [proxy]
        case ["proxies", proxy, "toxics", toxic]:
            return "toxic", [proxy, toxic]
    return None


async def dispatch(fp: FaultProxy, request: Request) -> Reply:
    if request.user_agent.startswith("Mozilla/"):  # Toxiproxy's guard against browsers
        return 403, {"error": "User agent not allowed", "status": 403}
    found = route(request.target.split("?", 1)[0])
    if found is None:
        return 404, {"error": "not found", "status": 404}
    name, params = found
    handler = ROUTES[name].get(request.method)
    if handler is None:
        return 405, {"error": "method not allowed", "status": 405}
    try:
        return await handler(fp, params, request.body)
    except ApiError as exc:
        return exc.status, exc.to_json()
    except Exception as exc:  # a bug must not take the API down
        log.exception("%s %s failed", request.method, request.target)
        return 500, {"error": f"internal error: {exc}", "status": 500}


# -- HTTP/1.1 with h11 -----------------------------------------------------------------

async def serve_connection(fp: FaultProxy, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> None:
    """Requests on one connection (keep-alive) until the client closes or errs."""
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            try:
                async with asyncio.timeout(READ_TIMEOUT_S):
                    request = await _next_request(conn, reader, writer)
            except h11.RemoteProtocolError as exc:
                await _send_error(conn, writer, exc.error_status_hint, str(exc))
                return
            except BodyTooLarge:
                await _send_error(conn, writer, 413, "request body too large")
                return
            if request is None:
                return
            status, payload = await dispatch(fp, request)
            await _send(conn, writer, status, payload)
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()
    except (TimeoutError, OSError, h11.LocalProtocolError):
        pass
    finally:
        writer.close()


async def _next_request(conn: h11.Connection, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> Request | None:
    head: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            if conn.they_are_waiting_for_100_continue:
                writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
            conn.receive_data(await reader.read(64 * 1024))
        elif isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_BODY_BYTES:
                raise BodyTooLarge
        elif isinstance(event, h11.EndOfMessage):
            assert head is not None
            agent = next((v for k, v in head.headers if k == b"user-agent"), b"")
            return Request(head.method.decode("ascii", "replace"),
                           head.target.decode("ascii", "replace"),
                           agent.decode("latin-1"), bytes(body))
        else:  # ConnectionClosed, or PAUSED after a request we did not answer
            return None


async def _send(conn: h11.Connection, writer: asyncio.StreamWriter, status: int,
                payload: Any) -> None:
    body = b"" if payload is None else json.dumps(payload).encode() + b"\n"
    headers = [("Content-Type", "application/json")]
    if status != 204:
        headers.append(("Content-Length", str(len(body))))
    data = conn.send(h11.Response(status_code=status, headers=headers,
                                  reason=HTTPStatus(status).phrase.encode()))
    if body:
        data += conn.send(h11.Data(data=body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    writer.write(data or b"")
    await writer.drain()


async def _send_error(conn: h11.Connection, writer: asyncio.StreamWriter, status: int,
                      message: str) -> None:
    if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
        with contextlib.suppress(h11.LocalProtocolError, OSError):
            await _send(conn, writer, status, {"error": message, "status": status})
