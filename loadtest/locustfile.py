"""Locust entry point: e-warong EDC users under the payday-spike shape, and how the
processes of one run cooperate.

    locust -f loadtest/locustfile.py --headless --host 127.0.0.1:PORT

against a switch seeded with the same demo world (``BPNT_LOAD_KPM``,
``BPNT_LOAD_TERMINALS``); ``python -m loadtest.load`` (``make load``) does all of it,
with one Locust process or a master and ``BPNT_LOAD_WORKERS`` workers.
Never import this (or anything that imports locust) from pytest: gevent
monkey-patches the process.

At test stop each load-generating process delivers the reversals its terminals
still owe (``LoadWorld.finish``).  A lone process then writes the terminals'
tally to ``BPNT_LOAD_SUMMARY``; a worker sends its stats and then its tally to the
master (one socket, in that order), and the master, once every worker's tally is
in (or ``stop_timeout`` + :data:`TALLY_MARGIN_S` has passed), writes the sum, so
its stats hold every request the tallies count.  The summary's ``in_progress``
says whether a test is running (true from test start to that point).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import gevent
from locust import events
from locust import stats as locust_stats
from locust.env import Environment
from locust.rpc import Message
from locust.runners import MasterRunner, WorkerRunner

from loadtest.edc_user import REQUEST_TYPE, EdcUser, Tally, current_world
from loadtest.shapes import PaydaySpike

__all__ = ["EdcUser", "PaydaySpike"]

log = logging.getLogger("bpnt.load")

TALLY_MESSAGE = "bpnt_tally"
#: How long the master waits for the workers' tallies on top of the stop timeout.
TALLY_MARGIN_S = 60.0
PARENT_POLL_S = 1.0


class TallyBoard:
    """The master's view: each worker's latest tally, and who reported this test."""

    def __init__(self) -> None:
        self.latest: dict[int, dict[str, Any]] = {}
        self.reported: set[int] = set()

    def expected(self) -> int:
        return int(os.environ.get("BPNT_LOAD_WORKERS", "1"))

    def missing(self) -> list[int]:
        return sorted(set(range(self.expected())) - self.reported)


_BOARD = TallyBoard()


def write_summary(tally: Tally, *, in_progress: bool, processes: int, reported: int) -> None:
    """The terminals' summary for ``loadtest.load``, replaced whole (it polls it)."""
    raw = os.environ.get("BPNT_LOAD_SUMMARY")
    if not raw:
        return
    path = Path(raw)
    data = tally.as_dict() | {"in_progress": in_progress, "processes": processes,
                              "processes_reported": reported}
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(data, indent=1, sort_keys=True))
    temporary.replace(path)


def _board_summary(*, in_progress: bool) -> None:
    write_summary(Tally.total(list(_BOARD.latest.values())), in_progress=in_progress,
                  processes=_BOARD.expected(), reported=len(_BOARD.reported))


def _on_tally(environment: Environment, msg: Message, **_kwargs: Any) -> None:
    index = int(msg.data["index"])
    _BOARD.latest[index] = msg.data["tally"]
    _BOARD.reported.add(index)


def _watch_parent(parent_pid: int) -> None:
    """Locust runs in its own process group (a Ctrl-C goes to ``loadtest.load``
    only): if that parent dies, shut down as on SIGTERM rather than run on."""
    while os.getppid() == parent_pid:
        gevent.sleep(PARENT_POLL_S)
    log.warning("parent process %d is gone: shutting down", parent_pid)
    os.kill(os.getpid(), signal.SIGTERM)


def _on_init(environment: Environment, **_kwargs: Any) -> None:
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        runner.register_message(TALLY_MESSAGE, _on_tally)
        _board_summary(in_progress=False)
    elif not isinstance(runner, WorkerRunner):
        write_summary(Tally(), in_progress=False, processes=1, reported=0)
    parent = os.environ.get("BPNT_LOAD_PARENT_PID")
    if parent:
        gevent.spawn(_watch_parent, int(parent))


def _on_test_start(environment: Environment, **_kwargs: Any) -> None:
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        _BOARD.reported.clear()
        _board_summary(in_progress=True)
    elif not isinstance(runner, WorkerRunner):
        world = current_world()
        write_summary(world.tally if world else Tally(), in_progress=True, processes=1,
                      reported=0)


def _finish_world(environment: Environment) -> Tally:
    """Deliver the reversals still owed, each reported as a request; the tally."""
    world = current_world()
    if world is None:
        return Tally()

    def report(name: str, started: float, exc: Exception | None) -> None:
        environment.events.request.fire(
            request_type=REQUEST_TYPE, name=name, response_length=0, exception=exc,
            response_time=(time.perf_counter() - started) * 1e3, context={})

    return world.finish(report)


def _on_test_stop(environment: Environment, **_kwargs: Any) -> None:
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        deadline = time.monotonic() + environment.stop_timeout + TALLY_MARGIN_S
        while _BOARD.missing() and time.monotonic() < deadline:
            gevent.sleep(0.1)
        if _BOARD.missing():
            log.error("no tally from worker(s) %s", _BOARD.missing())
        _board_summary(in_progress=False)
    elif isinstance(runner, WorkerRunner):
        tally = _finish_world(environment)
        # The stats of the reversals just delivered go first, on the same socket as the
        # tally: when the master has every tally, it has every request they count.
        runner._send_stats()
        runner.send_message(TALLY_MESSAGE, {"index": runner.worker_index,
                                             "tally": tally.as_dict()})
    else:
        write_summary(_finish_world(environment), in_progress=False, processes=1, reported=1)


def _on_quitting(environment: Environment, **_kwargs: Any) -> None:
    """Locust rewrites ``--csv`` files every ``CSV_STATS_INTERVAL_SEC`` and never once
    more at the end: give its writer (lone process or master) one more pass, so the
    reversals delivered at test stop are in the CSV as they are in the HTML report."""
    if not isinstance(environment.runner, WorkerRunner):
        gevent.sleep(locust_stats.CSV_STATS_INTERVAL_SEC * 1.5)


events.init.add_listener(_on_init)
events.test_start.add_listener(_on_test_start)
events.test_stop.add_listener(_on_test_stop)
events.quitting.add_listener(_on_quitting)
