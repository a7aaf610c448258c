"""Panels other apps add to the member's admin page, and columns they add to the member list, without
re-registering the Member admin.

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


@dataclass(frozen=True)
class MemberListColumn:
    """A column other apps add to the member changelist, with an optional filter.

    ``display(member)`` renders the cell; ``prepare(queryset)`` adds what it reads in the same query
    (``select_related``/``annotate``), so the list's query count stays the same for any number of rows.
    """

    key: str
    description: str
    display: Callable[[Any], Any]
    permission: Callable[[HttpRequest], bool]
    prepare: Callable[[Any], Any] | None = None  # queryset -> queryset
    list_filter: Any = None  # a SimpleListFilter class

    def visible_to(self, request: HttpRequest) -> bool:
        return bool(self.permission(request))


_columns: dict[str, MemberListColumn] = {}


def member_list_column_register(column: MemberListColumn) -> None:
    """Add (or replace, by ``key``) a column of the member changelist."""
    _columns[column.key] = column


def member_list_columns(request: HttpRequest) -> list[MemberListColumn]:
    return [column for column in _columns.values() if column.visible_to(request)]
