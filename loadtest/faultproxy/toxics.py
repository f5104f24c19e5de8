"""Toxics as Toxiproxy names them: type, attributes, stream, toxicity; JSON in and out.

| type | attributes (integers) | effect on the stream |
|---|---|---|
| ``latency`` | ``latency`` ms, ``jitter`` ms | each chunk delayed latency +/- jitter |
| ``bandwidth`` | ``rate`` KB/s | at most rate*1000 bytes/s (0: held until removed) |
| ``slow_close`` | ``delay`` ms | the close passed on delay ms late |
| ``timeout`` | ``timeout`` ms | data dropped; closed after timeout (0: never); removing it closes |
| ``reset_peer`` | ``timeout`` ms | timeout ms after the first data: TCP RST both ways |
| ``slicer`` | ``average_size``, ``size_variation`` B, ``delay`` µs | cut small, delay after each |
| ``limit_data`` | ``bytes`` | closed once that many bytes went through |
| ``noop`` | | nothing (Toxiproxy registers it too) |
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from loadtest.faultproxy.errors import bad_body, invalid_stream, invalid_toxic_type

STREAMS = ("upstream", "downstream")

#: Each type's attributes, in Toxiproxy's JSON order; each defaults to 0.
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "latency": ("latency", "jitter"),
    "bandwidth": ("rate",),
    "slow_close": ("delay",),
    "timeout": ("timeout",),
    "reset_peer": ("timeout",),
    "slicer": ("average_size", "size_variation", "delay"),
    "limit_data": ("bytes",),
    "noop": (),
}


@dataclass(frozen=True)
class Toxic:
    """One toxic of a proxy, as ``GET /proxies/{proxy}/toxics/{toxic}`` shows it."""

    name: str
    type: str
    stream: str = "downstream"
    toxicity: float = 1.0
    attributes: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"attributes": dict(self.attributes), "name": self.name, "type": self.type,
                "stream": self.stream, "toxicity": self.toxicity}

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Toxic:
        """A toxic as the server sent it (the client's side; no validation)."""
        return cls(name=body["name"], type=body["type"], stream=body["stream"],
                   toxicity=float(body["toxicity"]), attributes=dict(body.get("attributes") or {}))


def new_toxic(body: Any) -> Toxic:
    """The toxic a ``POST /proxies/{proxy}/toxics`` body asks for, checked.

    Defaults as Toxiproxy's: ``stream`` downstream, ``toxicity`` 1.0, ``name``
    ``<type>_<stream>``, each attribute 0; unknown attributes are ignored.

    >>> new_toxic({"type": "latency", "attributes": {"latency": 50}}).to_json()
    {'attributes': {'latency': 50, 'jitter': 0}, 'name': 'latency_downstream', \
'type': 'latency', 'stream': 'downstream', 'toxicity': 1.0}
    """
    if not isinstance(body, dict):
        raise bad_body("expected a JSON object")
    stream = body.get("stream", "downstream")
    if not isinstance(stream, str) or stream.lower() not in STREAMS:
        raise invalid_stream()
    stream = stream.lower()
    kind = body.get("type")
    if not isinstance(kind, str) or kind not in ATTRIBUTES:
        raise invalid_toxic_type()
    name = body.get("name") or f"{kind}_{stream}"
    if not isinstance(name, str):
        raise bad_body("name must be a string")
    toxicity = _toxicity(body.get("toxicity", 1.0))
    attributes = _attributes(kind, body.get("attributes"), dict.fromkeys(ATTRIBUTES[kind], 0))
    return Toxic(name, kind, stream, toxicity, attributes)


def updated_toxic(toxic: Toxic, body: Any) -> Toxic:
    """``toxic`` after a ``POST|PATCH /proxies/{proxy}/toxics/{toxic}`` body: the given
    attributes and ``toxicity`` replace the old ones; name, type and stream stay."""
    if not isinstance(body, dict):
        raise bad_body("expected a JSON object")
    toxicity = _toxicity(body["toxicity"]) if "toxicity" in body else toxic.toxicity
    attributes = _attributes(toxic.type, body.get("attributes"), dict(toxic.attributes))
    return Toxic(toxic.name, toxic.type, toxic.stream, toxicity, attributes)


def _toxicity(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not 0.0 <= value <= 1.0:
        raise bad_body(f"toxicity must be a number from 0 to 1, not {value!r}")
    return float(value)


def _attributes(kind: str, given: Any, base: dict[str, int]) -> dict[str, int]:
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise bad_body("attributes must be a JSON object")
    for key in ATTRIBUTES[kind]:
        if key not in given:
            continue
        value = given[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise bad_body(f"attribute {key} of {kind} must be an integer >= 0, not {value!r}")
        base[key] = value
    if kind == "slicer" and not 0 <= base["size_variation"] < base["average_size"]:
        raise bad_body("slicer needs average_size >= 1 and size_variation < average_size")
    return base
