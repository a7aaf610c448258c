"""Who may use the API, for what, and with how much.

Every endpoint needs an authenticated, active user (a token from the admin, or a session).

A token can be limited to what its client needs with Django permissions on the token's user:

- ``loyaltysync.send_events``: ``POST /events`` and ``/events/bulk``;
- ``loyaltysync.read_members``: list members, get a member, list a member's events;
- ``loyaltysync.write_members``: create a member, change a member;
- ``loyaltysync.erase_members``: erase a member (``DELETE /members/{id}/``); no other permission allows it.

Migration ``0003_api_scopes`` creates them and the groups "API: events sender" and "API: members
reader". Access fails closed: a user may do only what their permissions grant (403 otherwise, naming
the permission); a user who holds none of them (a staff user, a token made before scopes existed) may
do nothing. Superusers hold every permission.
"""

from __future__ import annotations

from django.conf import settings
from rest_framework.permissions import SAFE_METHODS, BasePermission, IsAuthenticated

from .exceptions import RequestBodyTooLarge

SEND_EVENTS = "loyaltysync.send_events"
READ_MEMBERS = "loyaltysync.read_members"
WRITE_MEMBERS = "loyaltysync.write_members"
ERASE_MEMBERS = "loyaltysync.erase_members"
API_PERMISSIONS = (SEND_EVENTS, READ_MEMBERS, WRITE_MEMBERS, ERASE_MEMBERS)

_WHAT = {SEND_EVENTS: "send events", READ_MEMBERS: "read members", WRITE_MEMBERS: "create or change members",
         ERASE_MEMBERS: "erase members"}


class IsApiUser(IsAuthenticated):
    """Every endpoint needs an authenticated user; inactive users' tokens are refused by DRF already."""


class _Scope(BasePermission):
    """Requires ``read`` for safe methods and ``write`` for the others."""

    read: str
    write: str

    def has_permission(self, request, view) -> bool:
        required = self.read if request.method in SAFE_METHODS else self.write
        if request.user.has_perm(required):
            return True
        self.message = f"This token may not {_WHAT[required]}: its user lacks the {required} permission."
        return False


class MembersScope(_Scope):
    read = READ_MEMBERS
    write = WRITE_MEMBERS


class EventsScope(_Scope):
    read = SEND_EVENTS  # the events endpoints only take POSTs; OPTIONS is answered to senders
    write = SEND_EVENTS


class EraseScope(_Scope):
    """Erasing cannot be undone: it has its own permission, which ``write_members`` does not include."""

    read = ERASE_MEMBERS
    write = ERASE_MEMBERS


class BodyWithinLimit(BasePermission):
    """Refuses a body larger than ``DATA_UPLOAD_MAX_MEMORY_SIZE`` with 413, from its Content-Length,
    before any of it is read.

    Django enforces the setting only when ``request.body`` is read (recent DRF versions read JSON that
    way; ``api.exceptions`` turns Django's error into the same 413); older DRF versions parse the raw
    stream, which has no limit. Runs after authentication: a caller without a token learns nothing.
    """

    def has_permission(self, request, view) -> bool:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0  # Django then reads nothing either
        if limit is not None and length > limit:
            raise RequestBodyTooLarge(length=length, limit=limit)
        return True
