"""Configuration as code: the program's declared custom actions (``"custom_actions"`` in the file).

``[{"name": "store_visit", "description": "..."}]``, by name. Importing replaces the declared actions
with the file's (each checked by ``CustomAction.full_clean()``, as in the admin); a file without the
key leaves them as they are, so files written before the key existed import unchanged. A workflow
triggered by an action must name a built-in, an engine or a declared one, or the import names the
workflow's place in the file.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from braze_integration.config import (
    Key,
    Problems,
    model_problems,
    place_index,
    place_key,
    read_list,
    read_object,
    show,
)
from loyaltysync.models import CustomAction
from loyaltysync.services.events import BUILT_IN_ACTIONS, ENGINE_ACTIONS

CUSTOM_ACTION_KEYS = {"name": Key(str), "description": Key(str, "")}


def custom_actions_export() -> list[dict[str, str]]:
    """Every declared custom action as the file holds it, by name."""
    # Sorted here, not by the database: collations differ between databases.
    rows = CustomAction.objects.values_list("name", "description")
    return [{"name": name, "description": description} for name, description in sorted(rows)]


@dataclass
class CustomActionsImport:
    """The file's custom actions, checked; ``given`` is false when the file has no ``custom_actions``."""

    given: bool
    actions: list[CustomAction] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)

    @property
    def declared(self) -> set[str]:
        if not self.given:
            return set(CustomAction.objects.values_list("name", flat=True))
        return {action.name for action in self.actions}


def custom_actions_read(value: Any, problems: Problems, *, given: bool) -> CustomActionsImport:
    """Check the file's ``custom_actions`` as the admin would and work out the changes; writes nothing."""
    plan = CustomActionsImport(given=given)
    if not given:
        return plan
    seen: dict[str, str] = {}
    for index, row in enumerate(read_list(value, "custom_actions", problems)):
        place = place_index("custom_actions", index)
        read = read_object(row, place, CUSTOM_ACTION_KEYS, problems)
        if read is None:
            continue
        action = CustomAction(name=read.values.get("name", ""), description=read.values.get("description", ""))
        if not model_problems(action, place, problems, skip=read.bad, exclude=list(read.bad)):
            continue
        if action.name in seen:
            problems.add(place_key(place, "name"), f"{show(action.name)} is declared twice (also {seen[action.name]})")
            continue
        seen[action.name] = place
        plan.actions.append(action)
    before = dict(CustomAction.objects.values_list("name", "description"))
    after = {action.name: action.description for action in plan.actions}
    for name in sorted(after):
        if name not in before:
            plan.changes.append(f"custom_actions: added {show(name)}")
        elif before[name] != after[name]:
            plan.changes.append(f"custom_actions: changed {show(name)} (description)")
    plan.changes.extend(f"custom_actions: removed {show(name)}" for name in sorted(set(before) - set(after)))
    return plan


def trigger_action_problem(action: str, declared: set[str]) -> str | None:
    """Why a workflow's event trigger names an action no event can have; ``None`` when it can."""
    known = {*BUILT_IN_ACTIONS, *ENGINE_ACTIONS, *declared}
    if not action or action in known:
        return None
    nearest = difflib.get_close_matches(action, sorted(known), n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(show(name) for name in nearest)}?" if nearest else ""
    return (f"{show(action)} is not a built-in action, an engine event or a declared custom action: declare it in "
            f"custom_actions.{hint}")


def custom_actions_apply(plan: CustomActionsImport) -> None:
    """Write what ``custom_actions_read`` checked, in the caller's transaction."""
    if not plan.given or not plan.changes:
        return
    names = [action.name for action in plan.actions]
    CustomAction.objects.exclude(name__in=names).delete()
    existing = {action.name: action for action in CustomAction.objects.filter(name__in=names)}
    for action in plan.actions:
        current = existing.get(action.name)
        if current is None:
            action.save()
        elif current.description != action.description:
            current.description = action.description
            current.save(update_fields=["description"])
