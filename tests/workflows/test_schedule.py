"""When date triggers are due: pure calendar arithmetic."""

from __future__ import annotations

import datetime as dt

import pytest

from workflows.schedule import CATCH_UP, DateRule, anniversary_days, anniversary_due, due, occurrence

UTC = dt.UTC
NINE = dt.time(9, 0)


def at(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(("rule", "now", "period", "moment"), [
    (DateRule("daily", NINE), at(2026, 3, 4, 12), "2026-03-04", at(2026, 3, 4, 9)),
    (DateRule("weekly", NINE, weekday=0), at(2026, 3, 4, 12), "2026-W10", at(2026, 3, 2, 9)),
    (DateRule("monthly", NINE, day=31), at(2026, 2, 28, 12), "2026-02", at(2026, 2, 28, 9)),
    (DateRule("monthly", NINE, day=15), at(2026, 3, 4, 12), "2026-03", at(2026, 3, 15, 9)),
    (DateRule("yearly", NINE, day=29, month=2), at(2027, 1, 1), "2027", at(2027, 2, 28, 9)),
])
def test_each_period_has_one_moment(rule, now, period, moment):
    assert occurrence(rule, now) == (period, moment)


def test_a_rule_is_due_from_its_moment_until_the_catch_up_window_ends():
    rule = DateRule("weekly", NINE, weekday=2)  # Wednesdays
    moment = at(2026, 3, 4, 9)

    assert due(rule, moment - dt.timedelta(seconds=1)) is None
    assert due(rule, moment) == ("2026-W10", moment)
    assert due(rule, moment + CATCH_UP) == ("2026-W10", moment)
    assert due(rule, moment + CATCH_UP + dt.timedelta(seconds=1)) is None


def test_anniversaries_are_due_daily_after_the_time_of_day():
    assert anniversary_due(NINE, at(2026, 3, 4, 8, 59)) is None
    assert anniversary_due(NINE, at(2026, 3, 4, 9, 0)) == ("2026-03-04", at(2026, 3, 4, 9))


def test_29_february_is_celebrated_on_28_february_in_other_years():
    assert anniversary_days(dt.date(2027, 2, 28)) == [(2, 28), (2, 29)]
    assert anniversary_days(dt.date(2028, 2, 28)) == [(2, 28)]
    assert anniversary_days(dt.date(2028, 2, 29)) == [(2, 29)]
