"""The harness's own Mosquitto: on a free loopback port, stopped (SIGTERM by PID) and
started again on the same port at will, and always stopped on the way out.

Never the system broker on 1883: a configuration of its own in a temporary
directory (``listener PORT 127.0.0.1``, anonymous, no persistence: a restart loses
every session and every message held, as a broker that crashed would), its output in
the run directory (``mosquitto.log``, appended across restarts).
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

from loadtest.own_process import OwnProcess, accepts, debian_binary
from terminal_sim.demo import free_port

START_TIMEOUT_S = 10.0
POLL_S = 0.02


def mosquitto_binary() -> str | None:
    """The broker's path, or None when it is not installed."""
    return debian_binary("mosquitto")


def unavailable() -> str | None:
    """Why no broker can be started here (None: one can)."""
    if mosquitto_binary() is None:
        return "mosquitto is not installed (apt-get install mosquitto)"
    return None


class OwnBroker(OwnProcess):
    """``with OwnBroker(log_path) as broker:`` ... ``broker.stop()`` / ``broker.start()``."""

    def __init__(self, log_path: Path) -> None:
        binary = mosquitto_binary()
        if binary is None:
            raise RuntimeError(unavailable())
        self.binary = binary
        self.log_path = log_path
        self.port = free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="bpnt-chaos-mosquitto-"))
        self.config = self._dir / "mosquitto.conf"
        self.config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                               "persistence false\n", encoding="utf-8")
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Start it on its port; returns once it accepts connections."""
        assert not self.running, "the broker is running"
        with self.log_path.open("ab") as log_file:
            self.proc = subprocess.Popen([self.binary, "-c", str(self.config)],
                                         stdout=log_file, stderr=subprocess.STDOUT)
        self.starts += 1
        deadline = time.monotonic() + START_TIMEOUT_S
        while not accepts(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                code = self.proc.poll()
                self.stop()
                raise RuntimeError(f"mosquitto did not listen on 127.0.0.1:{self.port} "
                                   f"(exit {code}); see {self.log_path}")
            time.sleep(POLL_S)  # polling the port: the only readiness signal it gives
