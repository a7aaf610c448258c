"""``GET /metrics``: the sync's figures for Prometheus, read from the database at each scrape.

The figures are the dashboard's: every process (web or worker) sees the same database, so any web
process can answer and nothing is counted in memory. Only authorised scrapers read them:
``Authorization: Bearer <METRICS_TOKEN>``, or a user holding ``braze_integration.view_metrics``
(logged in, or with ``Authorization: Token <API token>``). Without credentials 401, with a user lacking
the permission 403; 404 when neither ``METRICS_TOKEN`` nor ``METRICS_ENABLED`` is set.
A scrape also runs the alert check (see ``alerts``): Prometheus is a clock that keeps going when every
worker is down.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from . import alerts, monitoring, queue
from .models import (
    ConnectionStatus,
    MemberSyncState,
    OutboxItem,
    OutboxStatus,
    RequestOutcome,
    SyncRequest,
    SyncStatus,
)

logger = logging.getLogger(__name__)

PERMISSION = "braze_integration.view_metrics"
PREFIX = "loyaltysync_braze"
RECENT = timedelta(hours=1)


def _timestamp(value: datetime | None) -> float:
    return value.timestamp() if value else 0.0


def _counts(queryset, values: list[str]) -> dict[str, int]:
    found = dict(queryset.values_list("status").annotate(n=Count("pk")).values_list("status", "n"))
    return {value: found.get(value, 0) for value in values}


class SyncCollector:
    """Reads the figures when collected (a custom collector: nothing is kept between scrapes)."""

    def __init__(self, *, state: monitoring.Liveness | None = None):
        self.state = state

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        state = self.state or monitoring.liveness()

        queue.changes_fold_for_reading()  # saved changes count as pending
        members = GaugeMetricFamily(f"{PREFIX}_members", "Members by sync status (dead = dead letters).",
                                    labels=["status"])
        for status, count in _counts(MemberSyncState.objects.all(), SyncStatus.values).items():
            members.add_metric([status], count)
        yield members
        outbox = GaugeMetricFamily(f"{PREFIX}_outbox_items", "Outbox items (events, purchases, ad-hoc attributes) "
                                   "by status (dead = dead letters).", labels=["status"])
        for status, count in _counts(OutboxItem.objects.all(), OutboxStatus.values).items():
            outbox.add_metric([status], count)
        yield outbox
        yield GaugeMetricFamily(f"{PREFIX}_oldest_pending_member_seconds",
                                "Age of the oldest change not yet in Braze (0: none).",
                                value=(now - state.oldest_pending_at).total_seconds() if state.oldest_pending_at else 0)
        yield GaugeMetricFamily(f"{PREFIX}_oldest_pending_outbox_seconds",
                                "Age of the oldest pending outbox item (0: none).",
                                value=(now - state.oldest_outbox_at).total_seconds() if state.oldest_outbox_at else 0)
        yield GaugeMetricFamily(f"{PREFIX}_last_success_timestamp_seconds",
                                "When Braze last accepted a request (Unix time; 0: never).",
                                value=_timestamp(state.last_success_at))
        yield GaugeMetricFamily(f"{PREFIX}_worker_last_seen_timestamp_seconds",
                                "When a sync worker last ran a task (Unix time; 0: never).",
                                value=_timestamp(state.worker_seen_at))
        connection = GaugeMetricFamily(f"{PREFIX}_connection_state",
                                       "1 for the active connection's state (none: no active connection).",
                                       labels=["state"])
        for value in [*ConnectionStatus.values, "none"]:
            connection.add_metric([value], 1 if state.connection_status == value else 0)
        yield connection
        recent = GaugeMetricFamily(f"{PREFIX}_requests_last_hour",
                                   "Requests to Braze in the last hour, by outcome.", labels=["outcome"])
        found = dict(SyncRequest.objects.filter(created_at__gte=now - RECENT).values_list("outcome")
                     .annotate(n=Count("pk")).values_list("outcome", "n"))
        for outcome in RequestOutcome.values:
            recent.add_metric([outcome], found.get(outcome, 0))
        yield recent
        alarms = GaugeMetricFamily(f"{PREFIX}_alarm", "1 while the alarm is raised (connection: needs attention; "
                                   "stalled: old pending work and no worker alive).", labels=["alarm"])
        for alarm in monitoring.sync_alarms(now=now, state=state):
            alarms.add_metric([alarm.name], 1 if alarm.active else 0)
        yield alarms


def metrics_text(*, state: monitoring.Liveness | None = None) -> bytes:
    """The Prometheus text exposition of the sync's figures."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SyncCollector(state=state))
    return generate_latest(registry)


# --- who may read them -----------------------------------------------------------------------------

def _token_user(key: str):
    from rest_framework.authtoken.models import Token

    token = Token.objects.select_related("user").filter(key=key).first()
    return token.user if token is not None and token.user.is_active else None


def metrics_access(request: HttpRequest) -> int:
    """200 if the request may read the metrics, else the status to answer (401, 403 or 404)."""
    token = settings.METRICS_TOKEN
    if not (token or settings.METRICS_ENABLED):
        return 404
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer":
        return 200 if token and credentials and constant_time_compare(credentials, token) else 401
    user = None
    if scheme.lower() == "token" and credentials:
        user = _token_user(credentials)
        if user is None:
            return 401
    elif getattr(request, "user", None) is not None and request.user.is_authenticated:
        user = request.user
    if user is None:
        return 401
    return 200 if user.has_perm(PERMISSION) else 403


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    status = metrics_access(request)
    if status == 404:
        raise Http404("Metrics are not enabled.")
    if status != 200:
        response = HttpResponse("Metrics need a bearer token or the view_metrics permission.\n", status=status,
                                content_type="text/plain")
        if status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    state = monitoring.liveness()
    try:
        alerts.alerts_check(state=state)
    except Exception:  # the figures matter more than the alert check
        logger.exception("The alert check failed during a metrics scrape.")
    return HttpResponse(metrics_text(state=state), content_type=CONTENT_TYPE_LATEST)
