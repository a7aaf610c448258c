"""The static loop check: can a workflow start itself, directly or through others?

A workflow *listens* to event actions and member fields (its triggers) and *emits* what its loyalty
steps cause: ``trigger_event`` records its action, points steps record ``point_add`` /
``point_spend`` and change the balances, ``set_tier`` changes the tier and
``update_field`` changes its field (and records ``profile``). Workflow A leads to B when something
A emits is something B listens to; a cycle is a loop. The check is pure (no database) and
over-approximates: a filter might stop the loop at run time, but a loop that depends on data is
still refused here; the run-time depth limit (``runner.max_depth()``) is the second net.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from loyaltysync.attributes import ATTRIBUTES, POINTS, TIER

# A tier reached through points depends on the balance: left to the run-time depth limit, so that a
# workflow on "tier changes to Gold" may still give points.
_POINT_FIELDS = tuple(a.name for a in ATTRIBUTES if a.group == POINTS and a.watchable)
_TIER_FIELDS = tuple(a.name for a in ATTRIBUTES if a.group == TIER and a.watchable)
_TIER_EVENTS = (("event", "tier_reached"), ("event", "tier_lost"))


@dataclass(frozen=True)
class Shape:
    """What one active workflow listens to and what its steps cause, as ``(kind, name)`` pairs."""

    name: str
    listens: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    emits: Mapping[tuple[str, str], str] = field(default_factory=dict)  # what -> the step that causes it


def shape_of(name: str, triggers: Iterable[tuple[str, str, str]], steps: Iterable[tuple[str, Mapping[str, Any]]],
             ) -> Shape:
    """``triggers``: (kind, event action, field); ``steps``: (kind, settings by the file's keys)."""
    listens = set()
    for kind, action, field_name in triggers:
        if kind == "event" and action:
            listens.add(("event", action))
        elif kind == "field_change" and field_name:
            listens.add(("field", field_name))
    emits: dict[tuple[str, str], str] = {}
    for kind, settings in steps:
        caused: list[tuple[str, str]] = []
        if kind == "trigger_event":
            caused = [("event", settings.get("action") or "")]
        elif kind in ("add_points", "deduct_points"):
            caused = [("event", "point_add" if kind == "add_points" else "point_spend"),
                      *(("field", name) for name in _POINT_FIELDS)]
        elif kind == "set_tier":
            caused = [*_TIER_EVENTS, *(("field", name) for name in _TIER_FIELDS)]
        elif kind == "update_field":
            caused = [("event", "profile"), ("field", settings.get("field") or "")]
        for item in caused:
            emits.setdefault(item, kind)
    return Shape(name, frozenset(listens), emits)


def loops_find(shapes: Iterable[Shape]) -> dict[str, str]:
    """Workflow name -> the loop it is in, in words; empty when there is none."""
    shapes = list(shapes)
    edges: dict[str, list[tuple[str, str]]] = {}
    for source in shapes:
        for target in shapes:
            shared = sorted(set(source.emits) & target.listens)
            if shared:
                kind, name = shared[0]
                how = f"{source.emits[shared[0]]} -> {'event' if kind == 'event' else 'field'} {name}"
                edges.setdefault(source.name, []).append((target.name, how))
    found: dict[str, str] = {}
    for start in [shape.name for shape in shapes]:
        path = _cycle_from(start, edges)
        if path:
            words = " -> ".join(f'"{name}" ({how})' for name, how in path) + f' -> "{start}"'
            found[start] = f"can start itself: {words}"
    return found


def _cycle_from(start: str, edges: Mapping[str, list[tuple[str, str]]]) -> list[tuple[str, str]] | None:
    """A path from ``start`` back to itself (each hop with how it happens), breadth first."""
    queue: list[tuple[str, list[tuple[str, str]]]] = [(start, [])]
    seen = set()
    while queue:
        node, path = queue.pop(0)
        for target, how in edges.get(node, []):
            hop = [*path, (node, how)]
            if target == start:
                return hop
            if target not in seen:
                seen.add(target)
                queue.append((target, hop))
    return None
