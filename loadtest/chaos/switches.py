"""The switch processes of a chaos run: started, killed, restarted on the same port,
paused and resumed, always by PID, and all stopped on the way out.

``python -m <module> serve`` with ``BPNT_DATABASE_URL``/``BPNT_PORT`` (the module is
``switch.cli``; a test gives a deliberately broken one), readiness as in
:func:`terminal_sim.demo.wait_until_listening`, its output appended to one log per
switch (a restart's too).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from terminal_sim.demo import READY_TIMEOUT_S, free_port, wait_until_listening

STOP_TIMEOUT_S = 15.0
KILL_WAIT_S = 5.0


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
        env = dict(os.environ, BPNT_DATABASE_URL=self.db_url, BPNT_PORT=str(slot.port),
                   BPNT_HOST="127.0.0.1", **self.extra_env)
        with slot.log_path.open("ab") as log_file:
            slot.proc = subprocess.Popen([sys.executable, "-m", self.module, "serve"],
                                         env=env, stdout=log_file, stderr=subprocess.STDOUT)
        slot.paused = False
        slot.starts += 1
        try:
            wait_until_listening(slot.port, slot.proc, READY_TIMEOUT_S)
        except RuntimeError:
            self._end(slot)
            raise

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
