"""When date and anniversary triggers are due: pure calendar arithmetic on local times.

Each date workflow has one scheduled moment per period (a day, an ISO week, a month, a year). It
is due from that moment until ``CATCH_UP`` later, so a scanner that was stopped for a while still
runs it, while a workflow created days after this period's moment waits for the next one.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass

CATCH_UP = dt.timedelta(days=1)

DAILY, WEEKLY, MONTHLY, YEARLY = "daily", "weekly", "monthly", "yearly"


@dataclass(frozen=True)
class DateRule:
    """``frequency`` at ``at`` (local time); ``weekday`` 0 = Monday; ``day`` of the month (clamped to
    the month's length); ``month`` 1-12 for yearly rules."""

    frequency: str
    at: dt.time
    weekday: int | None = None
    day: int | None = None
    month: int | None = None


def _clamped(year: int, month: int, day: int) -> dt.date:
    return dt.date(year, month, min(day, calendar.monthrange(year, month)[1]))


def occurrence(rule: DateRule, now: dt.datetime) -> tuple[str, dt.datetime]:
    """The period ``now`` is in and the rule's moment in it, as ``(period key, local datetime)``.

    ``now`` must be aware; the moment carries its time zone. Period keys: ``2026-03-04`` (daily),
    ``2026-W10`` (weekly), ``2026-03`` (monthly), ``2026`` (yearly).
    """
    today = now.date()
    if rule.frequency == DAILY:
        period, day = today.isoformat(), today
    elif rule.frequency == WEEKLY:
        iso_year, week, _ = today.isocalendar()
        period = f"{iso_year}-W{week:02d}"
        day = today - dt.timedelta(days=today.weekday()) + dt.timedelta(days=rule.weekday or 0)
    elif rule.frequency == MONTHLY:
        period, day = f"{today.year}-{today.month:02d}", _clamped(today.year, today.month, rule.day or 1)
    elif rule.frequency == YEARLY:
        period, day = str(today.year), _clamped(today.year, rule.month or 1, rule.day or 1)
    else:
        raise ValueError(f"Unknown frequency {rule.frequency!r}")
    return period, dt.datetime.combine(day, rule.at, tzinfo=now.tzinfo)


def due(rule: DateRule, now: dt.datetime) -> tuple[str, dt.datetime] | None:
    """``occurrence()`` when its moment has come (and is at most ``CATCH_UP`` old), else ``None``."""
    period, moment = occurrence(rule, now)
    if moment <= now <= moment + CATCH_UP:
        return period, moment
    return None


def anniversary_due(at: dt.time, now: dt.datetime) -> tuple[str, dt.datetime] | None:
    """Anniversaries are checked daily: ``(today's date, today at ``at``)`` once that time has come."""
    moment = dt.datetime.combine(now.date(), at, tzinfo=now.tzinfo)
    return (now.date().isoformat(), moment) if now >= moment else None


def anniversary_days(today: dt.date) -> list[tuple[int, int]]:
    """The (month, day) pairs whose anniversary is today: 29 February counts on 28 February in
    years without one."""
    days = [(today.month, today.day)]
    if today.month == 2 and today.day == 28 and not calendar.isleap(today.year):
        days.append((2, 29))
    return days
