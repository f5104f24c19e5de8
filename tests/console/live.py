"""The console served for real (uvicorn on a free loopback port, in a thread) and
Debian's Chromium driven by Playwright, for the browser tests and the screenshots."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette

CHROMIUM = "/usr/bin/chromium"
#: As root, and on a closed network that refuses Chromium's own connections.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]
START_TIMEOUT_S = 20.0


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_chromium() -> None:
    """Skip without Chromium and Playwright, except in CI, where that is a failure."""
    problem = None
    if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        problem = f"no Chromium at {CHROMIUM}"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problem = "playwright (python) is not installed"
    if problem:
        if in_ci():
            pytest.fail(f"{problem} (CI=true: the browser tests are required)")
        pytest.skip(problem)


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
    while not server.started:
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
    """A persistent Chromium context on an empty profile directory."""
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
    page.goto(f"{base}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert page.url == f"{base}/", page.url


#: Submits a form like the page's own would (a hidden form with the session's CSRF
#: token), whatever the nav shows: the server must refuse regardless of the UI.
SUBMIT_FORM = """([action, fields]) => {
  const form = document.createElement('form');
  form.method = 'post';
  form.action = action;
  for (const [name, value] of Object.entries(fields)) {
    const input = document.createElement('input');
    input.type = 'hidden'; input.name = name; input.value = value;
    form.appendChild(input);
  }
  document.body.appendChild(form);
  form.submit();
}"""
