"""The Braze side of the erasure log: each erased member's profile deletion and Braze's answer, read-only.

The member id is never shown: a pending row holds it only until Braze accepted the deletion.
"""

from __future__ import annotations

from django.contrib import admin

from .admin_logs import LogAdmin
from .models import BrazeDeletion


@admin.register(BrazeDeletion)
class BrazeDeletionAdmin(LogAdmin):
    list_display = ["created_at", "member_hash_short", "status", "http_status", "message", "times_sent", "sent_at"]
    list_filter = ["status"]
    search_fields = ["member_hash"]
    exclude = ["external_id", "claim_token", "claimed_until"]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields if f.name not in self.exclude]

    @admin.display(description="Member (hash)", ordering="member_hash")
    def member_hash_short(self, obj: BrazeDeletion) -> str:
        return f"{obj.member_hash[:16]}…"
