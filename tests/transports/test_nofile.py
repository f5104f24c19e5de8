"""The switch raises its open-file limit for ``max_connections`` (issue 17)."""

from __future__ import annotations

import logging
import resource

import pytest

from switch.transports.nofile import NOFILE_MARGIN, NofileLimit, ensure_nofile_limit

INF = resource.RLIM_INFINITY


class FakeLimits:
    def __init__(self, soft: int, hard: int, *, refuse: bool = False) -> None:
        self.limits = (soft, hard)
        self.refuse = refuse
        self.calls: list[tuple[int, int]] = []

    def get(self, _which: int) -> tuple[int, int]:
        return self.limits

    def set(self, _which: int, limits: tuple[int, int]) -> None:
        self.calls.append(limits)
        if self.refuse:
            raise ValueError("not allowed")
        self.limits = limits


def _ensure(fake: FakeLimits, max_connections: int) -> NofileLimit | None:
    return ensure_nofile_limit(max_connections, getrlimit=fake.get, setrlimit=fake.set)


def test_soft_limit_raised_as_far_as_needed(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeLimits(1024, 65536)
    with caplog.at_level(logging.INFO, "bpnt.tcp"):
        result = _ensure(fake, 10_000)
    assert fake.limits == (10_000 + NOFILE_MARGIN, 65536)
    assert result is not None and result.enough and result.soft_before == 1024
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_enough_already_is_left_alone() -> None:
    fake = FakeLimits(20_000, 20_000)
    result = _ensure(fake, 4096)
    assert result is not None and result.enough and not fake.calls
    unlimited = FakeLimits(INF, INF)
    result = _ensure(unlimited, 10_000)
    assert result is not None and result.enough and not unlimited.calls


def test_unlimited_hard_limit_gives_what_is_needed() -> None:
    fake = FakeLimits(1024, INF)
    result = _ensure(fake, 10_000)
    assert fake.limits == (10_000 + NOFILE_MARGIN, INF)
    assert result is not None and result.enough


def test_hard_limit_too_low_raises_to_it_and_warns_once(
        caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeLimits(1024, 4096)
    with caplog.at_level(logging.INFO, "bpnt.tcp"):
        result = _ensure(fake, 10_000)
    assert fake.limits == (4096, 4096)
    assert result is not None and not result.enough
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "max_connections=10000" in warnings[0] and "EMFILE" in warnings[0]


def test_refused_raise_keeps_the_limit_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeLimits(1024, 65536, refuse=True)
    with caplog.at_level(logging.WARNING, "bpnt.tcp"):
        result = _ensure(fake, 10_000)
    assert result is not None and result.soft == 1024 and not result.enough
    assert len(caplog.records) == 2  # could not raise; still below what is needed


def test_the_real_limit_is_raised() -> None:
    """On this process: a lowered soft limit comes back up (then is restored)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2048 + NOFILE_MARGIN
    if hard != INF and hard < wanted:
        pytest.skip(f"hard open-file limit {hard} is below {wanted}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    try:
        result = ensure_nofile_limit(2048)
        assert result is not None and result.enough
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (wanted, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
