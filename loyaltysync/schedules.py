"""django-q2 schedules the apps need: created or brought up to date, never duplicated."""

from __future__ import annotations

from typing import Any

from django.utils import timezone


def schedule_ensure(*, name: str, func: str, schedule_type: str, minutes: int | None = None,
                    repeats: int = -1) -> None:
    """Make sure the schedule ``name`` exists and calls ``func`` as given (safe to call repeatedly).

    A new schedule runs first now; an existing one keeps its next run.
    """
    from django_q.models import Schedule

    values: dict[str, Any] = {"func": func, "schedule_type": schedule_type, "minutes": minutes, "repeats": repeats}
    Schedule.objects.update_or_create(name=name, defaults=values, create_defaults={**values, "next_run": timezone.now()})
