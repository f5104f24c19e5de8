"""Links to the host over every transport of HOST_SPEC §1, chosen by URL.

``tcp://HOST:PORT`` (:class:`~terminal_sim.link.TcpLink`), ``mqtt://HOST:PORT``
(:class:`~terminal_sim.links.mqtt.MqttLink`) and ``serial:PORT[?baud=9600&noise=0.01]``
(:class:`~terminal_sim.links.serial.SerialLink`; ``PORT`` is a device, a pty or a
pyserial URL such as ``loop://``).
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from terminal_sim.link import Link, TcpLink

SCHEMES = ("tcp://", "mqtt://", "serial:")


def make_link(url: str, tid: str) -> Link:
    """The link a terminal ``tid`` uses to reach the host at ``url``."""
    if url.startswith("tcp://"):
        host, port = _host_port(url, 8583)
        return TcpLink(host, port)
    if url.startswith("mqtt://"):
        from terminal_sim.links.mqtt import MqttLink

        host, port = _host_port(url, 1883)
        return MqttLink(host, port, tid)
    if url.startswith("serial:"):
        from terminal_sim.links.serial import SerialLink

        port_name, _, query = url[len("serial:"):].partition("?")
        options = {k: v[-1] for k, v in parse_qs(query).items()}
        return SerialLink.open(port_name, baud=int(options.get("baud", 9600)),
                               noise_rate=float(options.get("noise", 0.0)))
    raise ValueError(f"link URL must start with one of {', '.join(SCHEMES)}: {url!r}")


def shared_per_line(url: str) -> bool:
    """A serial line is one physical line: every terminal on it shares one link."""
    return url.startswith("serial:")


def _host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError(f"no host in {url!r}")
    return parts.hostname, parts.port or default_port
