"""The console served for real and Debian's Chromium driven by Playwright (the browser
tests and :mod:`console.screenshots`).

Chromium is the system's (``/usr/bin/chromium``), never a test tool's own download;
as root, and on a closed network that refuses Chromium's own connections, it starts
with :data:`CHROMIUM_FLAGS` and an empty profile directory.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]
START_TIMEOUT_S = 20.0


@contextmanager
def serving(app: Starlette) -> Iterator[str]:
    """``app`` on 127.0.0.1 (a port the kernel picks) until the block ends; its URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", loop="asyncio",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:  # polled against a deadline: no fixed sleep
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the console did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=START_TIMEOUT_S)
        sock.close()


@contextmanager
def chromium(user_data_dir: Path) -> Iterator[Any]:
    """A persistent Chromium context on the (empty) profile directory ``user_data_dir``
    (Playwright passes it as ``--user-data-dir``)."""
    from playwright.sync_api import sync_playwright

    user_data_dir.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(user_data_dir), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_FLAGS, viewport={"width": 1400, "height": 900})
        try:
            yield context
        finally:
            context.close()


def log_in(page: Any, base: str, username: str, password: str) -> None:
    """Through the login form, as a person would."""
    page.goto(f"{base}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    with page.expect_navigation():
        page.click("button[type=submit]")
    if page.url != f"{base}/":
        raise RuntimeError(f"login as {username} failed: at {page.url}")
