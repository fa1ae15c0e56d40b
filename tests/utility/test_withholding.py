"""The withholding alarm (red team round 4, issue 13; docs/fraud.md): the days each member
did not answer, counted over the horizon, against a binomial threshold."""

from __future__ import annotations

import math

import numpy as np
import pytest

from meterhub.model.grid import HourCalendar, LossModel
from meterhub.utility.theft import WithholdingDetector, balance, unbalanced_days


def test_the_documented_thresholds() -> None:
    wd = WithholdingDetector()
    assert (wd.p_outage, wd.far) == (0.05, 0.001)
    # docs/fraud.md: 30 days alarm on the 7th missing day, 14 on the 5th, 7 on the 4th
    assert [wd.threshold(n) for n in (2, 4, 7, 12, 14, 30, 90, 365)] == [2, 2, 3, 4, 4, 6, 12, 32]
    for n in (1, 2, 3, 7, 14, 30, 60, 90, 365):
        k = wd.threshold(n)
        assert wd.false_alarm_rate(n) <= wd.far
        # the smallest such threshold (or the floor of one day)
        tail = sum(math.comb(n, j) * 0.05**j * 0.95 ** (n - j) for j in range(k, n + 1))
        assert k == 1 or tail > wd.far


def test_an_honest_single_day_outage_does_not_alarm() -> None:
    wd = WithholdingDetector()
    for n in (1, 2, 3, 12, 30):
        assert wd.alarms({"m1": [0], "m2": [n - 1]}, n) == {}
    # even with a generous outage model the floor keeps one day from alarming
    assert WithholdingDetector(p_outage=1e-6, far=0.5).threshold(30) == 1
    assert WithholdingDetector(p_outage=1e-6, far=0.5).alarms({"m": [3]}, 30) == {}


def test_a_member_missing_on_most_days_alarms_on_the_day_it_crosses() -> None:
    wd = WithholdingDetector()
    days = 30
    k = wd.threshold(days)
    assert wd.alarms({"thief": range(days), "honest": [4, 17]}, days) == {"thief": k}
    # missing from day 10 on: the alarm rises on its (k+1)-th missing day
    assert wd.alarms({"late": range(10, days)}, days) == {"late": 10 + k}
    # exactly the threshold does not alarm; one more day does
    assert wd.alarms({"m": range(k)}, days) == {}
    assert wd.alarms({"m": range(k + 1)}, days) == {"m": k}


def test_each_day_counts_once_and_only_inside_the_horizon() -> None:
    wd = WithholdingDetector()
    # a group-day collected twice (a resumed run) or days outside the horizon do not add up
    assert wd.alarms({"m": [0, 0, 0, 1, 1, 40, -1]}, 12) == {}


def test_honest_members_alarm_at_the_documented_rate() -> None:
    """20,000 honest members over 30 days, each missing a day with probability 0.05: the
    share alarmed stays at the binomial tail (5.7e-4, at most far = 1e-3)."""
    wd = WithholdingDetector()
    rng = np.random.default_rng(13)
    missing = rng.random((20_000, 30)) < wd.p_outage
    alarmed = wd.alarms({str(i): np.nonzero(row)[0].tolist() for i, row in enumerate(missing)}, 30)
    assert len(alarmed) / 20_000 <= 2 * wd.far
    assert wd.false_alarm_rate(30) == pytest.approx(5.7e-4, rel=0.05)


def test_parameters_are_checked() -> None:
    for p, far in ((0.0, 0.001), (1.0, 0.001), (0.05, 0.0), (0.05, 1.0)):
        with pytest.raises(ValueError):
            WithholdingDetector(p, far)


def test_days_without_a_sum_are_reported_not_balanced() -> None:
    # two days of four hours; the second day has no complete hour
    cal = HourCalendar(day=np.array([0, 0, 0, 0, 1, 1, 1, 1]), local_hour=np.arange(8) % 4,
                       day_slices=(slice(0, 4), slice(4, 8)))
    f = np.full(8, 100.0)
    b = balance(f, np.full(8, 90.0), LossModel(0.0, 0.0), cal, np.array([True] * 4 + [False] * 4))
    assert unbalanced_days(b) == 1 and b.energy[0] == pytest.approx(10.0)
