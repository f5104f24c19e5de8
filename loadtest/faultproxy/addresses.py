"""Loopback-only ``host:port`` addresses (Toxiproxy's ``listen`` and ``upstream``).

Only ``127.0.0.0/8``, ``::1`` (written ``[::1]:PORT``) and ``localhost`` are accepted;
anything else, a wildcard (``0.0.0.0``, ``[::]``, ``:PORT``) or another host name
included, is refused with a :class:`~loadtest.faultproxy.errors.BadRequest`: the fault
proxy must never be reachable from, or forward to, another machine.  No DNS lookup.
"""

from __future__ import annotations

import ipaddress

from loadtest.faultproxy.errors import BadRequest

#: ``listen`` when a proxy is created without one (Toxiproxy would listen on every interface).
DEFAULT_LISTEN = "127.0.0.1:0"


def split_loopback(address: str, what: str, *, allow_port_zero: bool) -> tuple[str, int]:
    """``(host, port)`` of a loopback ``address``; ``localhost`` becomes ``127.0.0.1``.

    >>> split_loopback("localhost:8583", "upstream", allow_port_zero=False)
    ('127.0.0.1', 8583)
    >>> split_loopback("[::1]:0", "listen", allow_port_zero=True)
    ('::1', 0)
    """
    host, sep, port_text = address.rpartition(":")
    if not sep or not host:
        raise BadRequest(f"{what} {address!r}: expected HOST:PORT on loopback "
                         "(127.0.0.1, [::1] or localhost)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise BadRequest(f"{what} {address!r}: write an IPv6 host in brackets, [::1]:PORT")
    if host.lower() == "localhost":
        host = "127.0.0.1"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise BadRequest(f"{what} {address!r}: only loopback addresses are allowed "
                         "(127.0.0.1, [::1] or localhost), not a host name") from None
    if not ip.is_loopback:
        raise BadRequest(f"{what} {address!r}: {host} is not a loopback address; "
                         "the fault proxy listens on and forwards to loopback only")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise BadRequest(f"{what} {address!r}: the port must be a number 0..65535")
    port = int(port_text)
    if port == 0 and not allow_port_zero:
        raise BadRequest(f"{what} {address!r}: port 0 is only meaningful for listen")
    return str(ip), port


def join(host: str, port: int) -> str:
    """``host:port`` as Toxiproxy prints it (IPv6 in brackets).

    >>> join("::1", 80)
    '[::1]:80'
    """
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def normal_listen(address: str) -> str:
    """``address`` with ``localhost`` resolved: what two listens are compared by."""
    return join(*split_loopback(address or DEFAULT_LISTEN, "listen", allow_port_zero=True))
