"""Services of the loyalty domain: the one way its state changes.

The REST API, the admin, the commands and the tasks parse their input and call one of these.
Every service is keyword-only, runs in one ``transaction.atomic()``, saves members with
``.save()`` (listeners rely on ``post_save`` and ``Member.changed_fields()``) and sends
``loyalty_event_recorded`` for every event it records, after the member's state is updated and
inside the transaction (listeners defer their own work with ``on_commit``).

By concern: ``validation`` (input checks and limits), ``members`` (profiles, custom fields,
imports), ``events`` (recording loyalty events and their effects), ``ledger`` (points and tiers),
``jobs`` (scheduled points jobs), ``program`` (the program's rules, staff-edited), ``erasure``
(the right to be forgotten); ``recording`` holds what they share. The public services are
re-exported here: ``from loyaltysync import services; services.event_record(...)``.

Field paths in errors: profile and custom fields are named as in a member's body (``email``,
``custom_fields.shoe_size``); an event's problems are named as in the event (``customer``,
``action``, ``data.total``, ``data.items[0].price``).
"""

from ..attributes import COMPUTED_FIELDS, PROFILE_FIELDS
from ..errors import LoyaltyError
from .erasure import member_erase, member_id_erased, member_id_hash, member_id_hashes
from .events import BUILT_IN_ACTIONS, ENGINE_ACTIONS, event_record
from .jobs import SCHEDULES, points_expire_due, points_release_pending, schedules_ensure
from .ledger import member_points_refresh
from .members import (
    ImportOutcome,
    custom_fields_validate,
    member_create,
    member_import_row,
    member_profile_check,
    member_update,
)
from .program import ProgramRules, program_rules, program_settings_change
from .validation import member_field_problem, member_id_problem, path_key

__all__ = [
    "BUILT_IN_ACTIONS",
    "COMPUTED_FIELDS",
    "ENGINE_ACTIONS",
    "PROFILE_FIELDS",
    "SCHEDULES",
    "ImportOutcome",
    "LoyaltyError",
    "ProgramRules",
    "custom_fields_validate",
    "event_record",
    "member_create",
    "member_erase",
    "member_field_problem",
    "member_id_erased",
    "member_id_hash",
    "member_id_hashes",
    "member_id_problem",
    "member_import_row",
    "member_points_refresh",
    "member_profile_check",
    "member_update",
    "path_key",
    "points_expire_due",
    "points_release_pending",
    "program_rules",
    "program_settings_change",
    "schedules_ensure",
]
