"""Login throttling, in memory per client address (the per-user lock-out lives in
``console_users.failed_logins`` / ``locked_until``: :mod:`console.pages.login`)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

#: At most this many addresses are remembered (the oldest are forgotten first).
MAX_ADDRESSES = 10_000


class AddressLimiter:
    """Refuses an address after ``max_failures`` failed logins within ``window_s``."""

    def __init__(self, max_failures: int, window_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, address: str, now: float) -> deque[float]:
        failures = self._failures.setdefault(address, deque())
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        return failures

    def blocked(self, address: str) -> bool:
        with self._lock:
            return len(self._recent(address, self._clock())) >= self.max_failures

    def record_failure(self, address: str) -> None:
        with self._lock:
            now = self._clock()
            self._recent(address, now).append(now)
            if len(self._failures) > MAX_ADDRESSES:
                del self._failures[next(iter(self._failures))]

    def clear(self, address: str) -> None:
        with self._lock:
            self._failures.pop(address, None)
