"""Links from the EDC to the host, with fault injection (HOST_SPEC §1).

Blocking sockets on purpose: the same link serves the simulator, scripts and
Locust users.  Framing comes from the sans-IO core in :mod:`switch.protocol`.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from switch.protocol.errors import FramingError
from switch.protocol.framing import TcpFramer, frame_tcp


class LinkError(Exception):
    """The host could not be reached or did not answer."""


class LinkTimeout(LinkError):
    """No response within the terminal timeout (HOST_SPEC §5: TIME-OUT)."""


class LinkDown(LinkError):
    """The connection could not be made or broke."""


class NotConnected(LinkDown):
    """The host could not be reached: the request was certainly not sent."""


class Link(Protocol):
    def exchange(self, unit: bytes, timeout_s: float) -> bytes: ...

    def close(self) -> None: ...


class TcpLink:
    """One persistent TCP connection, reopened after a failure."""

    def __init__(self, host: str, port: int, *, connect_timeout_s: float = 5.0) -> None:
        self.host = host
        self.port = port
        self.connect_timeout_s = connect_timeout_s
        self._sock: socket.socket | None = None
        self._framer = TcpFramer()

    def _connect(self) -> socket.socket:
        if self._sock is None:
            try:
                self._sock = socket.create_connection(
                    (self.host, self.port), timeout=self.connect_timeout_s
                )
            except OSError as exc:
                raise NotConnected(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._framer = TcpFramer()
        return self._sock

    def exchange(self, unit: bytes, timeout_s: float) -> bytes:
        sock = self._connect()
        try:
            sock.settimeout(timeout_s)
            sock.sendall(frame_tcp(unit))
            while (response := self._framer.next_unit()) is None:
                data = sock.recv(4096)
                if not data:
                    raise LinkDown("host closed the connection")
                self._framer.receive_data(data)
            return response
        except TimeoutError as exc:
            self.close()
            raise LinkTimeout(f"no response in {timeout_s:.1f} s") from exc
        except (OSError, FramingError) as exc:
            self.close()
            raise LinkDown(str(exc)) from exc
        except LinkDown:
            self.close()
            raise

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


@dataclass
class Faults:
    """Faults a test or scenario switches on; each counts down as it fires."""

    #: The request reaches the host, but its response is lost (FAILURES F13).
    drop_responses: int = 0
    #: The request never leaves the terminal (no signal, FAILURES F8).
    drop_requests: int = 0
    log: list[str] = field(default_factory=list)


class FaultyLink:
    """Wraps a link and injects the faults in :class:`Faults`."""

    def __init__(self, inner: Link, faults: Faults | None = None) -> None:
        self.inner = inner
        self.faults = faults or Faults()

    def exchange(self, unit: bytes, timeout_s: float) -> bytes:
        if self.faults.drop_requests > 0:
            self.faults.drop_requests -= 1
            self.faults.log.append("request dropped")
            raise LinkTimeout("request lost on the way (injected)")
        response = self.inner.exchange(unit, timeout_s)
        if self.faults.drop_responses > 0:
            self.faults.drop_responses -= 1
            self.faults.log.append("response dropped")
            raise LinkTimeout("response lost on the way back (injected)")
        return response

    def close(self) -> None:
        self.inner.close()


class DirectLink:
    """A link straight into an in-process host (``HostService.process_unit``).

    No sockets: tests and tools drive the real host through the real EDC.
    """

    def __init__(self, handler: Callable[[bytes], bytes | None]) -> None:
        self._handler = handler

    def exchange(self, unit: bytes, timeout_s: float) -> bytes:
        response = self._handler(unit)
        if response is None:
            raise LinkDown("host closed the connection")
        return response

    def close(self) -> None:
        pass
