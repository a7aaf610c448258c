"""What the Braze admin screens share: dates, JSON, state badges, member links and the stylesheet."""

from __future__ import annotations

import json
from typing import Any

from django.urls import reverse
from django.utils.html import format_html
from django.utils.timezone import localtime

from .models import RequestOutcome, SyncStatus


def when(value) -> str:
    return localtime(value).strftime("%Y-%m-%d %H:%M:%S") if value else "—"


def pretty_json(value: Any) -> str:
    return format_html(
        "<pre class='braze-json'>{}</pre>",
        json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str),
    )


def state_badge(words: str, modifier: str) -> str:
    return format_html('<span class="braze-badge braze-badge--{}">{}</span>', modifier, words)


SYNC_BADGE = {
    SyncStatus.SYNCED: "ok",
    SyncStatus.PENDING: "wait",
    SyncStatus.FAILED: "bad",
    SyncStatus.DEAD: "bad",
}
OUTCOME_BADGE = {
    RequestOutcome.SUCCESS: "ok",
    RequestOutcome.SENDING: "wait",
    RequestOutcome.PARTIAL: "warn",
    RequestOutcome.RATE_LIMITED: "warn",
}


def member_link(member_pk: int, member_id: str) -> str:
    return format_html(
        '<a href="{}">{}</a>', reverse("admin:loyaltysync_member_change", args=[member_pk]), member_id
    )


class BrazeMedia:
    css = {"all": ["braze_integration/admin.css"]}
