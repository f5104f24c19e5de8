"""The fault proxy in process: proxies by name, Toxiproxy's operations as coroutines.

Every method has the semantics (and raises the :mod:`~loadtest.faultproxy.errors`) of
the HTTP route of the same name; the ``*_json`` forms take a route's JSON body as is
and are what the HTTP API calls.  All changes are serialised by one lock.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from loadtest.faultproxy.addresses import DEFAULT_LISTEN, normal_listen, split_loopback
from loadtest.faultproxy.errors import (
    ApiError,
    bad_body,
    missing_field,
    proxy_exists,
    proxy_not_found,
)
from loadtest.faultproxy.proxy import Proxy, finish
from loadtest.faultproxy.toxics import Toxic

DEFAULT_API = "127.0.0.1:8474"


class PopulateError(ApiError):
    """``populate`` stopped at a proxy; ``proxies`` are those it had done by then."""

    def __init__(self, error: ApiError, proxies: list[Proxy]) -> None:
        super().__init__(error.message, error.status)
        self.proxies = proxies


@dataclass(frozen=True)
class ProxySpec:
    name: str
    listen: str
    upstream: str
    enabled: bool


class FaultProxy:
    """A Toxiproxy-shaped fault proxy: start it in a running loop, ``await close()``."""

    def __init__(self, *, seed: int | None = None) -> None:
        self.rng = random.Random(seed)
        self._proxies: dict[str, Proxy] = {}
        self._lock = asyncio.Lock()
        self._api: asyncio.Server | None = None
        self._api_handlers: set[asyncio.Task[None]] = set()
        self._api_writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> FaultProxy:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    # -- proxies -------------------------------------------------------------------------

    def proxies(self) -> dict[str, Proxy]:
        return dict(self._proxies)

    def get_proxy(self, name: str) -> Proxy:
        proxy = self._proxies.get(name)
        if proxy is None:
            raise proxy_not_found()
        return proxy

    async def create_proxy(self, name: str, upstream: str, listen: str = DEFAULT_LISTEN,
                           enabled: bool = True) -> Proxy:
        return await self.create_proxy_json(
            {"name": name, "upstream": upstream, "listen": listen, "enabled": enabled})

    async def create_proxy_json(self, body: Any) -> Proxy:
        spec = proxy_spec(body, "")
        async with self._lock:
            if spec.name in self._proxies:
                raise proxy_exists()
            proxy = Proxy(spec.name, spec.listen, spec.upstream, self.rng)
            if spec.enabled:
                await proxy.start()
            self._proxies[spec.name] = proxy
            return proxy

    async def update_proxy(self, name: str, *, listen: str | None = None,
                           upstream: str | None = None, enabled: bool | None = None) -> Proxy:
        given = {"listen": listen, "upstream": upstream, "enabled": enabled}
        return await self.update_proxy_json(name, {k: v for k, v in given.items()
                                                   if v is not None})

    async def update_proxy_json(self, name: str, body: Any) -> Proxy:
        """New ``listen``/``upstream`` restart the proxy (open connections drop);
        ``enabled`` false stops it (connections closed), true starts it."""
        async with self._lock:
            proxy = self.get_proxy(name)
            if not isinstance(body, dict):
                raise bad_body("expected a JSON object")
            spec = proxy_spec({"name": name, "listen": proxy.listen, "upstream": proxy.upstream,
                               "enabled": proxy.enabled} | body | {"name": name}, "")
            if spec.listen != normal_listen(proxy.listen) or spec.upstream != proxy.upstream:
                await proxy.stop()
                proxy.listen, proxy.upstream = spec.listen, spec.upstream
            if spec.enabled:
                await proxy.start()
            else:
                await proxy.stop()
            return proxy

    async def delete_proxy(self, name: str) -> None:
        async with self._lock:
            proxy = self.get_proxy(name)
            await proxy.stop()
            del self._proxies[name]

    async def populate(self, bodies: Any) -> list[Proxy]:
        """Create or replace each proxy of a list (Toxiproxy's populate JSON): one whose
        ``listen`` and ``upstream`` are unchanged is left as it is, toxics and all."""
        if not isinstance(bodies, list):
            raise bad_body("expected a JSON array of proxies")
        specs = [proxy_spec(body, f" at proxy {i}") for i, body in enumerate(bodies, 1)]
        done: list[Proxy] = []
        async with self._lock:
            for spec in specs:
                existing = self._proxies.get(spec.name)
                if existing is not None:
                    if normal_listen(existing.listen) == spec.listen \
                            and existing.upstream == spec.upstream:
                        done.append(existing)
                        continue
                    await existing.stop()
                proxy = Proxy(spec.name, spec.listen, spec.upstream, self.rng)
                if spec.enabled:
                    try:
                        await proxy.start()
                    except ApiError as exc:
                        raise PopulateError(exc, done) from exc
                self._proxies[spec.name] = proxy
                done.append(proxy)
        return done

    async def reset(self) -> None:
        """Enable every proxy and remove every toxic."""
        async with self._lock:
            for proxy in self._proxies.values():
                await proxy.start()
                await proxy.remove_all_toxics()

    # -- toxics --------------------------------------------------------------------------

    def toxics(self, proxy: str) -> list[Toxic]:
        return self.get_proxy(proxy).toxics

    def get_toxic(self, proxy: str, toxic: str) -> Toxic:
        return self.get_proxy(proxy).toxic(toxic)

    async def add_toxic(self, proxy: str, type: str, *, stream: str = "downstream",
                        name: str | None = None, toxicity: float = 1.0,
                        attributes: dict[str, int] | None = None) -> Toxic:
        """A toxic on ``proxy`` (``name`` defaults to ``<type>_<stream>``), applied to the
        connections already open as well as to new ones."""
        body: dict[str, Any] = {"type": type, "stream": stream, "toxicity": toxicity,
                                "attributes": attributes or {}}
        if name is not None:
            body["name"] = name
        return await self.add_toxic_json(proxy, body)

    async def add_toxic_json(self, proxy: str, body: Any) -> Toxic:
        async with self._lock:
            return await self.get_proxy(proxy).add_toxic(body)

    async def update_toxic(self, proxy: str, toxic: str, *,
                           attributes: dict[str, int] | None = None,
                           toxicity: float | None = None) -> Toxic:
        body: dict[str, Any] = {"attributes": attributes or {}}
        if toxicity is not None:
            body["toxicity"] = toxicity
        return await self.update_toxic_json(proxy, toxic, body)

    async def update_toxic_json(self, proxy: str, toxic: str, body: Any) -> Toxic:
        async with self._lock:
            return await self.get_proxy(proxy).update_toxic(toxic, body)

    async def remove_toxic(self, proxy: str, toxic: str) -> None:
        async with self._lock:
            await self.get_proxy(proxy).remove_toxic(toxic)

    # -- the HTTP API and shutdown -------------------------------------------------------

    async def start_api(self, address: str = DEFAULT_API) -> str:
        """Serve the HTTP API on a loopback ``address`` (port 0: any); the address bound."""
        host, port = split_loopback(address, "API address", allow_port_zero=True)
        try:
            self._api = await asyncio.start_server(self._serve_api, host, port)
        except OSError as exc:
            raise ApiError(f"API listen tcp {address}: {exc.strerror or exc}", 500) from exc
        bound_port = self._api.sockets[0].getsockname()[1]
        return f"[{host}]:{bound_port}" if ":" in host else f"{host}:{bound_port}"

    async def _serve_api(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        from loadtest.faultproxy.http_api import serve_connection

        task = asyncio.current_task()
        assert task is not None
        self._api_handlers.add(task)
        self._api_writers.add(writer)
        try:
            await serve_connection(self, reader, writer)
        except asyncio.CancelledError:
            writer.transport.abort()  # close() gave up waiting for it
        finally:
            self._api_handlers.discard(task)
            self._api_writers.discard(writer)

    async def close(self) -> None:
        """Stop the API (closing its connections) and every proxy."""
        if self._api is not None:
            self._api.close()
            self._api = None
        for writer in list(self._api_writers):
            writer.close()
        await finish(self._api_handlers)
        async with self._lock:
            for proxy in self._proxies.values():
                await proxy.stop()


def proxy_spec(body: Any, where: str) -> ProxySpec:
    """The checked fields of a proxy's JSON (``where`` names it in a populate list)."""
    if not isinstance(body, dict):
        raise bad_body(f"expected a JSON object{where}")
    name, upstream = body.get("name"), body.get("upstream")
    listen, enabled = body.get("listen") or DEFAULT_LISTEN, body.get("enabled", True)
    if name is not None and not isinstance(name, str) or \
            upstream is not None and not isinstance(upstream, str):
        raise bad_body(f"name and upstream must be strings{where}")
    if not name:
        raise missing_field(f"name{where}")
    if not upstream:
        raise missing_field(f"upstream{where}")
    if not isinstance(listen, str) or not isinstance(enabled, bool):
        raise bad_body(f"listen must be a string and enabled a boolean{where}")
    split_loopback(upstream, f"upstream{where}", allow_port_zero=False)
    return ProxySpec(name, normal_listen(listen), upstream, enabled)
