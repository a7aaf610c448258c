"""The workflow as a picture: an inline SVG drawn on the server from a snapshot, nothing from the internet.

Triggers side by side at the top, then the entry conditions, then the steps in order down the
page. A filter has two exits: "yes" goes on down, "no" goes right to its else branch (or to an
end, which counts as a success). A wait shows its duration. Given a run's step log, the steps the
run passed are outlined (green: success, red: failure) and the others are faded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from .steps import duration_text, step_label

BOX_W, BOX_H, GAP_Y, GAP_X, MARGIN = 230, 40, 26, 40, 16
COLOURS = {"trigger": "#e8f0fe", "conditions": "#fff4d6", "filter": "#fde7e9", "wait": "#eeeeee",
           "braze": "#e6f4ea", "loyalty": "#f3e8fd", "end": "#ffffff"}


@dataclass
class _Canvas:
    parts: list[str] = field(default_factory=list)
    width: int = 0
    height: int = 0
    passed: Mapping[int, str] | None = None  # step id -> "success" / "failure" (a run's path)

    def box(self, x: int, y: int, text: str, kind: str, *, step_id: int | None = None, shape: str = "rect") -> None:
        stroke, opacity, extra, kind_class = "#5f6368", "1", "", ""
        if self.passed is not None and step_id is not None:
            outcome = self.passed.get(step_id)
            if outcome is None:
                opacity = "0.45"
            else:
                stroke = "#188038" if outcome == "success" else "#d93025"
                extra = ' stroke-width="3"'
                kind_class = f" passed {outcome}"
                text = text + (" ✓" if outcome == "success" else " ✗")
        fill = COLOURS.get(kind, "#ffffff")
        data = f' data-step="{step_id}"' if step_id is not None else ""
        rx = "20" if shape == "round" else "4"
        self.parts.append(
            f'<g class="node {kind}{kind_class}"{data} opacity="{opacity}">'
            f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="{rx}" fill="{fill}" stroke="{stroke}"{extra}/>'
            f'<text x="{x + BOX_W // 2}" y="{y + BOX_H // 2 + 4}" text-anchor="middle">{escape(_cut(text))}</text></g>')
        self.width = max(self.width, x + BOX_W + MARGIN)
        self.height = max(self.height, y + BOX_H + MARGIN)

    def line(self, x1: int, y1: int, x2: int, y2: int, label: str = "") -> None:
        self.parts.append(f'<path d="M{x1},{y1} L{x2},{y2}" stroke="#5f6368" fill="none" marker-end="url(#arrow)"/>')
        if label:
            self.parts.append(f'<text class="exit" x="{(x1 + x2) // 2 + 4}" y="{(y1 + y2) // 2 - 3}">{escape(label)}</text>')


def _cut(text: str, size: int = 34) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"


def trigger_text(trigger: Mapping[str, Any]) -> str:
    kind = trigger.get("kind")
    if kind == "event":
        return f"Event: {trigger.get('action')}"
    if kind == "field_change":
        text = f"{trigger.get('field')} changes"
        if trigger.get("to"):
            text += f" to {trigger['to']}"
        return text
    if kind == "date":
        return f"{str(trigger.get('frequency')).capitalize()} at {trigger.get('time')}"
    return f"Anniversary: {trigger.get('field')}"


def step_text(step: Mapping[str, Any]) -> str:
    kind = step.get("kind", "")
    if kind == "send_event":
        return f"Braze event: {step.get('event_name')}"
    if kind == "sync_data":
        return "Braze attributes: " + ", ".join(v.get("name", "") for v in step.get("values") or [])
    if kind == "send_purchase":
        return "Braze purchases"
    if kind == "filter":
        rows = step.get("conditions") or []
        joiner = f" {step.get('logic', 'and')} "
        return "If " + (joiner.join(f"{r.get('attr')} {r.get('op')} {r.get('text')}" for r in rows) or "(no condition)")
    if kind == "wait":
        return f"Wait {duration_text(step.get('seconds'))}"
    return step_label(kind, kind, step)


def _kind_class(kind: str) -> str:
    if kind in ("sync_data", "send_event", "send_purchase"):
        return "braze"
    if kind in ("filter", "wait"):
        return kind
    return "loyalty"


def _column(canvas: _Canvas, steps: list[Mapping[str, Any]], x: int, y: int, next_x: list[int]) -> int:
    """Draw ``steps`` down from (x, y); else branches go right, at ``next_x[0]`` and beyond. Returns the
    bottom y of the column."""
    for step in steps:
        canvas.box(x, y, step_text(step), _kind_class(step.get("kind", "")), step_id=step.get("id"))
        if step.get("kind") == "filter":
            branch_x = next_x[0]
            next_x[0] += BOX_W + GAP_X
            canvas.line(x + BOX_W, y + BOX_H // 2, branch_x, y + BOX_H // 2 + BOX_H + GAP_Y, "no")
            else_steps = list(step.get("else") or [])
            if else_steps:
                _column(canvas, else_steps, branch_x, y + BOX_H + GAP_Y, next_x)
            else:
                canvas.box(branch_x, y + BOX_H + GAP_Y, "End (filtered out)", "end", shape="round")
            canvas.line(x + BOX_W // 2, y + BOX_H, x + BOX_W // 2, y + BOX_H + GAP_Y, "yes")
        else:
            canvas.line(x + BOX_W // 2, y + BOX_H, x + BOX_W // 2, y + BOX_H + GAP_Y)
        y += BOX_H + GAP_Y
    canvas.box(x, y, "End", "end", shape="round")
    return y + BOX_H


def flowchart_svg(snapshot: Mapping[str, Any], *, passed: Mapping[int, str] | None = None) -> SafeString:
    """The workflow of ``snapshot`` (``Workflow.snapshot()``) as inline SVG; ``passed`` marks a run's path."""
    canvas = _Canvas(passed=passed)
    triggers = list(snapshot.get("triggers") or [])
    column_x = MARGIN
    for index, trigger in enumerate(triggers):
        canvas.box(MARGIN + index * (BOX_W + GAP_X // 2), MARGIN, trigger_text(trigger), "trigger")
    y = MARGIN + BOX_H
    for index, _trigger in enumerate(triggers):
        x = MARGIN + index * (BOX_W + GAP_X // 2) + BOX_W // 2
        canvas.line(x, y, column_x + BOX_W // 2, y + GAP_Y)
    y += GAP_Y
    rows = snapshot.get("conditions") or []
    if rows:
        joiner = f" {snapshot.get('logic', 'and')} "
        canvas.box(column_x, y, "Only if " + joiner.join(f"{r.get('attr')} {r.get('op')} {r.get('text')}"
                                                         for r in rows), "conditions")
        canvas.line(column_x + BOX_W // 2, y + BOX_H, column_x + BOX_W // 2, y + BOX_H + GAP_Y)
        y += BOX_H + GAP_Y
    _column(canvas, list(snapshot.get("steps") or []), column_x, y, [column_x + BOX_W + GAP_X])
    width, height = max(canvas.width, 300), canvas.height
    svg = (f'<svg class="workflow-flowchart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="The workflow as a flowchart" '
           'font-family="sans-serif" font-size="12">'
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#5f6368"/></marker></defs>'
           + "".join(canvas.parts) + "</svg>")
    return mark_safe(svg)  # noqa: S308 (every text in it is escaped above)
