"""A :class:`FaultProxy` with its HTTP API on an asyncio loop in a daemon thread, for
blocking code (tests, the chaos harness): drive it with :meth:`client` or :meth:`call`."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, TypeVar

from loadtest.faultproxy.client import ToxiproxyClient
from loadtest.faultproxy.service import FaultProxy

T = TypeVar("T")


class ThreadedFaultProxy:
    """``with ThreadedFaultProxy() as fp: proxy = fp.client().create(...)``."""

    def __init__(self, api: str = "127.0.0.1:0", *, seed: int | None = None,
                 start_timeout_s: float = 10.0) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="faultproxy",
                                        daemon=True)
        self._thread.start()
        self.proxy = FaultProxy(seed=seed)
        try:
            self.api_address = self.call(lambda fp: fp.start_api(api), start_timeout_s)
        except BaseException:
            self._stop_loop()
            raise

    def call(self, action: Callable[[FaultProxy], Coroutine[Any, Any, T]],
             timeout_s: float = 10.0) -> T:
        """Run ``action(fault_proxy)`` on the proxy's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(action(self.proxy), self.loop).result(timeout_s)

    def client(self, timeout_s: float = 10.0) -> ToxiproxyClient:
        return ToxiproxyClient.for_address(self.api_address, timeout_s=timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        if self.loop.is_closed():
            return
        try:
            self.call(lambda fp: fp.close(), timeout_s)
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self.loop.close()

    def __enter__(self) -> ThreadedFaultProxy:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
