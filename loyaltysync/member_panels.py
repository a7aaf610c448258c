"""Panels other apps add to the member's admin page, without re-registering the Member admin.

A panel is a template rendered below the member's fieldsets with its own context, shown only to
users its permission check lets through; it may bring changelist actions and URLs of its own,
under the same check. The loyalty domain knows nothing of who registers panels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest


@dataclass(frozen=True)
class MemberAction:
    """A changelist action: ``func(model_admin, request, queryset)``, offered when ``allowed(request)``."""

    name: str
    description: str
    func: Callable[..., Any]
    allowed: Callable[[HttpRequest], bool]


@dataclass(frozen=True)
class MemberPanel:
    key: str
    template: str
    context: Callable[[HttpRequest, Any], dict[str, Any]]  # (request, member) -> the template's context
    permission: Callable[[HttpRequest], bool]
    actions: tuple[MemberAction, ...] = ()
    urls: Callable[[Any], list] | None = None  # (model_admin) -> URL patterns under the member admin

    def visible_to(self, request: HttpRequest) -> bool:
        return bool(self.permission(request))


_panels: dict[str, MemberPanel] = {}


def member_panel_register(panel: MemberPanel) -> None:
    """Add (or replace, by ``key``) a panel of the member page."""
    _panels[panel.key] = panel


def member_panels() -> list[MemberPanel]:
    return list(_panels.values())
