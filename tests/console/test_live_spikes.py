"""The spike rule's properties (console.live.spikes)."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from console.live.spikes import (
    BASELINE_MINUTES,
    MIN_REQUESTS,
    MinuteRate,
    group_spikes,
    spike,
    threshold,
)

volumes = st.integers(min_value=MIN_REQUESTS, max_value=2_000)


@given(st.integers(min_value=MIN_REQUESTS, max_value=200), st.data(),
       st.lists(st.integers(min_value=1, max_value=10), min_size=2, max_size=40))
def test_a_constant_rate_never_spikes(requests: int, data: st.DataObject,
                                      multiples: list[int]) -> None:
    failures = data.draw(st.integers(min_value=0, max_value=requests))
    # every minute has the same rate, whatever its volume
    assert spike([MinuteRate(requests * k, failures * k) for k in multiples]) is None


@given(st.integers(min_value=1, max_value=BASELINE_MINUTES), volumes, volumes,
       st.fractions(min_value=0, max_value=Fraction(1, 4)))
def test_a_jump_spikes(history: int, base_requests: int, latest: int,
                       base_rate: Fraction) -> None:
    before = [MinuteRate(base_requests, int(base_rate * base_requests))] * history
    jumped = min(Fraction(1), threshold(base_rate))
    failures = -(-jumped.numerator * latest // jumped.denominator)  # ceiling
    found = spike([*before, MinuteRate(latest, failures)])
    assert found is not None
    assert found.rate >= threshold(found.baseline)
    assert found.requests == latest


@given(st.integers(min_value=0, max_value=MIN_REQUESTS - 1), volumes)
def test_too_few_requests_give_no_verdict(few: int, many: int) -> None:
    calm = [MinuteRate(many, 0)] * 5
    assert spike([*calm, MinuteRate(few, few)]) is None  # every one failed, but few
    assert spike([MinuteRate(few, 0), MinuteRate(many, many)]) is None  # no baseline


def test_the_rule_is_three_times_and_twenty_points() -> None:
    base = [MinuteRate(100, 10)] * BASELINE_MINUTES  # 10 %
    assert spike([*base, MinuteRate(100, 29)]) is None  # 29 % < max(30 %, 30 %)
    assert spike([*base, MinuteRate(100, 30)]) is not None
    low = [MinuteRate(100, 1)] * 3  # 1 %: 20 points matter, not 3x
    assert spike([*low, MinuteRate(100, 20)]) is None
    assert spike([*low, MinuteRate(100, 21)]) is not None
    # only the last BASELINE_MINUTES count as the baseline
    old_storm = [MinuteRate(100, 90)] * 5
    assert spike([*old_storm, *base, MinuteRate(100, 30)]) is not None


def test_groups_are_judged_by_declines_and_by_time_outs() -> None:
    calm = [(100, 2, 1)] * 10
    found = group_spikes({"32": [*calm, (50, 40, 0)], "33": [*calm, (50, 0, 30)],
                          "34": [*calm, (50, 2, 1)]})
    assert set(found) == {("32", "decline"), ("33", "timeout")}
