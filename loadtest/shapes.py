"""Load shapes for the EDC users (FAILURES F1: the payout-day rush).

On the day the period's money lands every KPM wants their rice at once: the
e-warongs open and terminals come on line, the word spreads and nearly every
terminal is busy (the spike), the queues settle into a long busy plateau, then
the day winds down.  Users here are terminals, so the peak is the number of
EDCs in the world (``BPNT_LOAD_TERMINALS``), never more.

The whole run is bounded: ``--run-time`` when given, else ``BPNT_LOAD_DURATION_S``
(default 60 s); the shape returns ``None`` at the end and Locust stops.
"""

from __future__ import annotations

import os

from locust import LoadTestShape

DEFAULT_DURATION_S = 60.0
DEFAULT_PEAK_USERS = 40

#: (fraction of the run, fraction of the peak): straight lines between the points.
#: Opening ramp to 40 %, a steep spike to 100 % held briefly, a plateau at 60 %,
#: then the evening ramp down.
PAYDAY_CURVE: tuple[tuple[float, float], ...] = (
    (0.00, 0.10),
    (0.20, 0.40),
    (0.25, 1.00),
    (0.40, 1.00),
    (0.45, 0.60),
    (0.80, 0.60),
    (1.00, 0.05),
)


def users_at(fraction: float, peak_users: int) -> int:
    """Users wanted at ``fraction`` (0..1) of the run: at least 1, at most the peak."""
    for (x0, y0), (x1, y1) in zip(PAYDAY_CURVE, PAYDAY_CURVE[1:], strict=False):
        if x0 <= fraction <= x1:
            level = y0 + (y1 - y0) * (fraction - x0) / (x1 - x0)
            return max(1, min(peak_users, round(level * peak_users)))
    return 1


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


class PaydaySpike(LoadTestShape):
    """Ramp up, spike, plateau, ramp down over a bounded run (module docstring)."""

    #: Read ``--run-time`` ourselves: a shape otherwise ignores it.
    use_common_options = True

    def duration_s(self) -> float:
        options = getattr(self.runner.environment, "parsed_options", None) if self.runner else None
        run_time = getattr(options, "run_time", None)
        if run_time:
            return float(run_time)
        return env_float("BPNT_LOAD_DURATION_S", DEFAULT_DURATION_S)

    def tick(self) -> tuple[int, float] | None:
        duration_s = self.duration_s()
        elapsed_s = self.get_run_time()
        if elapsed_s >= duration_s:
            return None
        peak = env_int("BPNT_LOAD_TERMINALS", DEFAULT_PEAK_USERS)
        # Spawn fast enough to follow the spike: the whole fleet within about a second.
        return users_at(elapsed_s / duration_s, peak), float(max(1, peak))
