"""Checks other apps add to every member save of the loyalty services, without the domain knowing them.

A check gets the member about to be saved and the names of the attributes that changed (as
``Member.changed_fields()`` gives them; ``None`` for a new member) and returns its problems as field
path -> message (paths as in a member's body: ``email``, ``custom_fields.prefs``, or the attribute's
name for derived ones such as ``last_purchase_items``). The services refuse such a save with
``InvalidData`` naming every problem, so the API answers 400, the admin shows the error next to the
field and an import reports the row. The Braze integration registers one at app ready: it refuses
values that a mapped Braze attribute could never take.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import InvalidData

MemberCheck = Callable[[Any, "set[str] | None"], dict[str, str]]

_checks: dict[str, MemberCheck] = {}


def member_check_register(key: str, check: MemberCheck) -> None:
    """Add (or replace, by ``key``) a check run on every member save of the services."""
    _checks[key] = check


def member_checks_run(member: Any, changed: set[str] | None) -> None:
    """Run every registered check on ``member``; raise ``InvalidData`` naming each problem found."""
    problems: dict[str, str] = {}
    for check in _checks.values():
        for path, problem in check(member, changed).items():
            problems.setdefault(path, problem)
    if problems:
        raise InvalidData(problems)
