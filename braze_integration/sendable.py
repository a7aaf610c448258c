"""The door check: refuse, when a member is saved, a value that a mapped Braze attribute could never take.

Registered with the loyalty domain (``loyaltysync.member_checks``) at app ready. Only the mapped
fields that the change touches are converted, with the same rules the sync sends them by
(``payloads.convert_value``), so what the door lets in is what the sync can send. A value that
becomes unsendable later (a mapping added afterwards) is not refused anywhere: the sync sends the
member's other attributes and reports the one that cannot go (``building``).
"""

from __future__ import annotations

from typing import Any

from loyaltysync import attributes

from . import payloads
from .fields import CUSTOM_PREFIX, LoyaltyField

CHECK_KEY = "braze_sendable"


def field_path(loyalty_field: LoyaltyField) -> str:
    """How the loyalty domain names the field in errors: ``custom_fields.<key>`` or the attribute's name."""
    if loyalty_field.key.startswith(CUSTOM_PREFIX):
        return attributes.CUSTOM_PREFIX + loyalty_field.key[len(CUSTOM_PREFIX):]
    return loyalty_field.key


def unsendable_problem(remote_field: str, problem: str) -> str:
    return f"cannot be sent to Braze as {remote_field}: {problem}"


def member_sendable_problems(member: Any, changed: set[str] | None) -> dict[str, str]:
    """Field path -> why Braze could never take it, for the mapped fields ``changed`` touches."""
    from . import services  # the check runs on the save path: the cached plan lives with the save-path config

    config = services.sync_config()
    if config.connection_id is None:
        return {}
    problems: dict[str, str] = {}
    if changed is None or "member_id" in changed:
        try:
            payloads.check_external_id(member.member_id or "")
        except payloads.PayloadError as err:
            problems["member_id"] = f"cannot be Braze's external_id: {err.problem}"
    if not config.concerns(changed):
        return problems
    plan = services.door_plan()
    if plan is None:
        return problems
    touched = [(f, spec) for f, spec in plan.specs if changed is None or not changed.isdisjoint(f.depends_on)]
    if not touched:
        return problems
    # Only the touched fields' columns: following ``tier__name`` would cost a query on every save.
    row = attributes.row_of(member, {"id", "member_id"} | {column for f, _ in touched for column in f.columns})
    for loyalty_field, spec in touched:
        try:
            plan.converted_value(loyalty_field, spec, row)
        except payloads.PayloadError as err:
            problems.setdefault(field_path(loyalty_field), unsendable_problem(err.field, err.problem))
    return problems
