"""A blocking client of the Toxiproxy HTTP API (this fault proxy's or a real Toxiproxy's),
shaped like toxiproxy-python: ``ToxiproxyClient().create(...)`` gives a proxy with
``add_toxic``/``destroy_toxic``/``disable``/``enable``/``destroy``.

It blocks: call it from a thread other than the loop the fault proxy runs in.
Errors raise :mod:`~loadtest.faultproxy.errors` (``NotFound``, ``AlreadyExists``...).
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from loadtest.faultproxy.errors import ApiError, from_json
from loadtest.faultproxy.toxics import Toxic


class ToxiproxyClient:
    def __init__(self, host: str = "127.0.0.1", port: int = 8474, *,
                 timeout_s: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.timeout_s = timeout_s

    @classmethod
    def for_address(cls, address: str, *, timeout_s: float = 10.0) -> ToxiproxyClient:
        """``ToxiproxyClient.for_address("127.0.0.1:8474")``."""
        host, _, port = address.rpartition(":")
        return cls(host.strip("[]"), int(port), timeout_s=timeout_s)

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """One API call; the decoded JSON answer (None when there is no body)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        try:
            payload = None if body is None else json.dumps(body)
            conn.request(method, path, body=payload, headers={
                "Content-Type": "application/json", "User-Agent": "bpnt-faultproxy-client"})
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        try:
            decoded = json.loads(data) if data.strip() else None
        except ValueError:
            decoded = None
        if response.status >= 400:
            raise from_json(response.status, decoded)
        return decoded

    def version(self) -> str:
        return str(self.request("GET", "/version")["version"])

    def running(self) -> bool:
        try:
            self.version()
        except (OSError, ApiError):
            return False
        return True

    def proxies(self) -> dict[str, ClientProxy]:
        return {name: self._proxy(body) for name, body in self.request("GET", "/proxies").items()}

    def get_proxy(self, name: str) -> ClientProxy:
        return self._proxy(self.request("GET", _proxy_path(name)))

    def create(self, upstream: str, name: str, listen: str | None = None,
               enabled: bool = True) -> ClientProxy:
        body: dict[str, Any] = {"name": name, "upstream": upstream, "enabled": enabled}
        if listen is not None:
            body["listen"] = listen
        return self._proxy(self.request("POST", "/proxies", body))

    def destroy(self, proxy: ClientProxy | str) -> None:
        self.request("DELETE", _proxy_path(proxy if isinstance(proxy, str) else proxy.name))

    def populate(self, proxies: list[dict[str, Any]]) -> list[ClientProxy]:
        return [self._proxy(p) for p in self.request("POST", "/populate", proxies)["proxies"]]

    def reset(self) -> None:
        """Enable every proxy and remove every toxic."""
        self.request("POST", "/reset")

    def _proxy(self, body: dict[str, Any]) -> ClientProxy:
        return ClientProxy(body["name"], body["listen"], body["upstream"], body["enabled"],
                           self)


@dataclass
class ClientProxy:
    name: str
    listen: str
    upstream: str
    enabled: bool
    client: ToxiproxyClient = field(repr=False)

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    def toxics(self) -> dict[str, Toxic]:
        found = self.client.request("GET", f"{_proxy_path(self.name)}/toxics")
        return {t["name"]: Toxic.from_json(t) for t in found}

    def get_toxic(self, name: str) -> Toxic:
        return Toxic.from_json(self.client.request("GET", self._toxic_path(name)))

    def add_toxic(self, type: str, *, name: str | None = None, stream: str = "downstream",
                  toxicity: float = 1.0, attributes: dict[str, int] | None = None) -> Toxic:
        body: dict[str, Any] = {"type": type, "stream": stream, "toxicity": toxicity,
                                "attributes": attributes or {}}
        if name is not None:
            body["name"] = name
        return Toxic.from_json(
            self.client.request("POST", f"{_proxy_path(self.name)}/toxics", body))

    def update_toxic(self, name: str, *, attributes: dict[str, int] | None = None,
                     toxicity: float | None = None) -> Toxic:
        body: dict[str, Any] = {"attributes": attributes or {}}
        if toxicity is not None:
            body["toxicity"] = toxicity
        return Toxic.from_json(self.client.request("POST", self._toxic_path(name), body))

    def destroy_toxic(self, name: str) -> None:
        self.client.request("DELETE", self._toxic_path(name))

    def disable(self) -> None:
        self._update({"enabled": False})

    def enable(self) -> None:
        self._update({"enabled": True})

    def destroy(self) -> None:
        self.client.destroy(self.name)

    def _update(self, body: dict[str, Any]) -> None:
        fresh = self.client.request("POST", _proxy_path(self.name), body)
        self.listen, self.upstream, self.enabled = (fresh["listen"], fresh["upstream"],
                                                    fresh["enabled"])

    def _toxic_path(self, name: str) -> str:
        return f"{_proxy_path(self.name)}/toxics/{quote(name, safe='')}"


def _proxy_path(name: str) -> str:
    return f"/proxies/{quote(name, safe='')}"
