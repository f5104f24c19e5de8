"""Locust entry point: e-warong EDC users under the payday-spike shape.

    locust -f loadtest/locustfile.py --headless --host 127.0.0.1:PORT

against a switch seeded with the same demo world (``BPNT_LOAD_KPM``,
``BPNT_LOAD_TERMINALS``); ``python -m loadtest.load`` (``make load``) does all of it.
Never import this (or anything that imports locust) from pytest: gevent
monkey-patches the process.
"""

from __future__ import annotations

from loadtest.edc_user import EdcUser
from loadtest.shapes import PaydaySpike

__all__ = ["EdcUser", "PaydaySpike"]
