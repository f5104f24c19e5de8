"""The switch processes of a chaos run: started, killed, restarted on the same port,
paused and resumed, always by PID, and all stopped on the way out.

``python -m <module> serve`` with ``BPNT_DATABASE_URL``/``BPNT_PORT`` (the module is
``switch.cli``; a test gives a deliberately broken one), readiness as in
:func:`terminal_sim.demo.wait_until_listening` (and, when a scenario asks, a line in
the log: ``ready_text``, e.g. the MQTT subscription), its output appended to one log
per switch (a restart's too).  Settings for every switch (``extra_env``) or for one
slot (``slot_env``: its serial line).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from terminal_sim.demo import READY_TIMEOUT_S, free_port, wait_until_listening

STOP_TIMEOUT_S = 15.0
KILL_WAIT_S = 5.0
#: How often the log is read while waiting for ``ready_text``.
LOG_POLL_S = 0.05


@dataclass
class SwitchProcess:
    """One switch slot: its port and log stay the same across restarts."""

    index: int
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    paused: bool = False
    starts: int = 0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class SwitchFleet:
    db_url: str
    log_dir: Path
    module: str = "switch.cli"
    extra_env: dict[str, str] = field(default_factory=dict)
    #: Settings of one slot only (by index), over ``extra_env``.
    slot_env: dict[int, dict[str, str]] = field(default_factory=dict)
    #: A (re)start is ready once its log shows this line too, e.g. the MQTT
    #: subscription; None: once it listens on TCP.
    ready_text: str | None = None
    slots: list[SwitchProcess] = field(default_factory=list)

    @property
    def ports(self) -> list[int]:
        return [slot.port for slot in self.slots]

    def start_all(self, count: int) -> None:
        for index in range(count):
            slot = SwitchProcess(index, free_port(), self.log_dir / f"switch-{index}.log")
            self.slots.append(slot)
            self.start(index)

    def start(self, index: int) -> None:
        """(Re)start slot ``index`` on its port; returns once it accepts connections."""
        slot = self.slots[index]
        assert not slot.running, f"switch {index} is running"
        env = {**os.environ, "BPNT_DATABASE_URL": self.db_url, "BPNT_PORT": str(slot.port),
               "BPNT_HOST": "127.0.0.1", "BPNT_METRICS_PORT": "0", **self.extra_env,
               **self.slot_env.get(index, {})}
        seen_before = self.log_count(index, self.ready_text) if self.ready_text else 0
        with slot.log_path.open("ab") as log_file:
            slot.proc = subprocess.Popen([sys.executable, "-m", self.module, "serve"],
                                         env=env, stdout=log_file, stderr=subprocess.STDOUT)
        slot.paused = False
        slot.starts += 1
        try:
            wait_until_listening(slot.port, slot.proc, READY_TIMEOUT_S)
            if self.ready_text is not None and not self.wait_log(
                    index, self.ready_text, seen_before + 1, READY_TIMEOUT_S):
                raise RuntimeError(f"switch {index}: no {self.ready_text!r} in "
                                   f"{slot.log_path} within {READY_TIMEOUT_S:g} s")
        except RuntimeError:
            self._end(slot)
            raise

    def log_count(self, index: int, text: str) -> int:
        """How many times ``text`` is in slot ``index``'s log (restarts included)."""
        path = self.slots[index].log_path
        if not path.exists():
            return 0
        return path.read_text(encoding="utf-8", errors="replace").count(text)

    def wait_log(self, index: int, text: str, count: int, timeout_s: float,
                 abort: threading.Event | None = None) -> bool:
        """Wait until slot ``index``'s log holds ``text`` ``count`` times (bounded);
        False on the time-out, on ``abort``, or when the switch has exited."""
        deadline = time.monotonic() + timeout_s
        slot = self.slots[index]
        while self.log_count(index, text) < count:
            if time.monotonic() > deadline or not slot.running or \
                    (abort is not None and abort.is_set()):
                return False
            time.sleep(LOG_POLL_S)  # a log line is the only signal; bounded above
        return True

    def kill(self, index: int) -> None:
        """``kill -9``: no shutdown, no flush, whatever was in flight."""
        slot = self.slots[index]
        assert slot.proc is not None and slot.running, f"switch {index} is not running"
        os.kill(slot.proc.pid, signal.SIGKILL)
        slot.proc.wait(KILL_WAIT_S)
        slot.paused = False

    def pause(self, index: int) -> None:
        slot = self.slots[index]
        assert slot.proc is not None and slot.running and not slot.paused
        os.kill(slot.proc.pid, signal.SIGSTOP)
        slot.paused = True

    def resume(self, index: int) -> None:
        slot = self.slots[index]
        assert slot.proc is not None and slot.paused
        os.kill(slot.proc.pid, signal.SIGCONT)
        slot.paused = False

    def stop_all(self) -> list[str]:
        """SIGTERM each (SIGCONT first if paused), SIGKILL what does not stop in time;
        returns what each said about its exit (a non-zero status is worth reading)."""
        notes = []
        for slot in self.slots:
            if slot.proc is None:
                continue
            code = self._end(slot)
            if code not in (0, None, -signal.SIGKILL):
                notes.append(f"switch {slot.index} (pid {slot.proc.pid}) exited with {code}; "
                             f"see {slot.log_path}")
        return notes

    def _end(self, slot: SwitchProcess) -> int | None:
        proc = slot.proc
        assert proc is not None
        if proc.poll() is None:
            if slot.paused:
                os.kill(proc.pid, signal.SIGCONT)
                slot.paused = False
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(KILL_WAIT_S)
        return proc.returncode
