"""The console app served for real (uvicorn on a free loopback port, in a thread), for
the tests that need a live HTTP connection (server-sent events, the browser)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.applications import Starlette

from terminal_sim.demo import free_port

START_TIMEOUT_S = 20.0
#: uvicorn cancels what is still streaming this long after a shutdown begins.
GRACEFUL_S = 2.0


class LiveServer:
    def __init__(self, app: Starlette) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="on", timeout_graceful_shutdown=GRACEFUL_S)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="console-server",
                                       daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"the console did not start on {self.url}")
            time.sleep(0.05)

    def stop(self, timeout_s: float = 15.0) -> bool:
        """Shut down; whether it finished within ``timeout_s``."""
        self.server.should_exit = True
        self.thread.join(timeout_s)
        return not self.thread.is_alive()


@contextmanager
def served(app: Starlette) -> Iterator[LiveServer]:
    server = LiveServer(app)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def wait_until(condition: object, timeout_s: float, what: str) -> None:
    """Poll ``condition()`` until true, or fail saying ``what`` did not happen."""
    assert callable(condition)
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout_s} s")
        time.sleep(0.05)
