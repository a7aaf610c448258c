"""Is the sync alive? The worker heartbeat, the last successful send, and the alarms built on them.

A worker notes that it ran a sync task (``worker_seen``) and the delivery notes each request Braze
accepted (``send_succeeded``). Both write one row, at most every ``HEARTBEAT_EVERY`` seconds per
process: a figure a few seconds stale costs nothing, a write per request or per member would.
``worker_last_seen`` and ``last_success`` read them back (the dashboard, ``braze_status``, ``/metrics``
and a readiness check); ``sync_alarms`` says what needs a person.

The few log lines an operator greps for (sending paused or resumed, a member dead-lettered) are
written here, so the engine calls one function where it happens.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Min
from django.utils import timezone

from .models import (
    Connection,
    ConnectionStatus,
    MemberChange,
    MemberSyncState,
    OutboxItem,
    OutboxStatus,
    SyncHeartbeat,
    SyncStatus,
)

logger = logging.getLogger(__name__)

HEARTBEAT_EVERY = 5.0  # seconds between one process's heartbeat writes
HEARTBEAT_PK = 1

# Per process: when each heartbeat field was last written (monotonic seconds).
_written: dict[str, float] = {}


def _beat(field: str, *, force: bool = False) -> None:
    last = _written.get(field)
    if not force and last is not None and time.monotonic() - last < HEARTBEAT_EVERY:
        return
    now = timezone.now()
    if not SyncHeartbeat.objects.filter(pk=HEARTBEAT_PK).update(**{field: now}):
        SyncHeartbeat.objects.bulk_create([SyncHeartbeat(pk=HEARTBEAT_PK)], ignore_conflicts=True)
        SyncHeartbeat.objects.filter(pk=HEARTBEAT_PK).update(**{field: now})
    _written[field] = time.monotonic()


def heartbeat_forget() -> None:
    """Forget this process's last writes, so the next beat writes (tests; a forked worker)."""
    _written.clear()


def worker_seen() -> None:
    """A worker is running a sync task: note the time (cheap; call it at every task run)."""
    _beat("worker_seen_at")


def send_succeeded(connection: Connection) -> None:
    """Braze accepted a request. The first success after a pause clears the pause and its error
    message from the connection (a healed connection shows no stale error), and says so in the log."""
    if connection.paused_until is not None:
        now = timezone.now()
        cleared = Connection.objects.filter(pk=connection.pk, paused_until__lte=now).update(
            paused_until=None, last_message="")
        connection.paused_until = None
        if cleared:
            logger.info("Braze sync resumed: Braze accepted a request after the pause.")
    # After the answer's transaction: workers never wait on each other for the heartbeat row.
    transaction.on_commit(lambda: _beat("last_success_at"))


def sending_paused(*, until: datetime, message: str) -> None:
    """Sending pauses for every worker until ``until`` (rate limit or Braze unavailable)."""
    logger.warning("Braze sync paused until %s: %s", until.isoformat(timespec="seconds"), message)


def connection_needs_attention(*, message: str) -> None:
    """Braze refused the credentials: sending stops until a successful Connect."""
    logger.error("Braze sync stopped, the connection needs attention: %s", message)


def claim_lost(*, connection: Connection) -> None:
    """A worker found its claim gone before a request left (paused past its lease, or the members erased
    or taken): it sends nothing it built, and another round sends those members."""
    logger.warning("A Braze sync worker lost its claim before sending (it was paused or slowed past its lease, "
                   "or the members were erased); it sent nothing stale, and the members go in another round.")


def member_dead_lettered(*, member_id: int, attempts: int, message: str) -> None:
    """A member's changes went to the dead letters (they wait for a retry from the admin)."""
    logger.warning("Braze sync gave up on member #%s after %s attempts: %s", member_id, attempts, message)


def _heartbeat() -> SyncHeartbeat | None:
    return SyncHeartbeat.objects.filter(pk=HEARTBEAT_PK).first()


def worker_last_seen() -> datetime | None:
    """When a worker last ran a sync task (``None``: never). One indexed read: fit for a readiness check."""
    beat = _heartbeat()
    return beat.worker_seen_at if beat else None


def last_success() -> datetime | None:
    """When Braze last accepted a request (``None``: never)."""
    beat = _heartbeat()
    return beat.last_success_at if beat else None


# --- alarms ---------------------------------------------------------------------------------------

CONNECTION = "connection"
STALLED = "stalled"


@dataclass(frozen=True)
class Alarm:
    name: str
    active: bool
    message: str


@dataclass(frozen=True)
class Liveness:
    """The figures the alarms, the dashboard, ``braze_status`` and ``/metrics`` share."""

    worker_seen_at: datetime | None
    last_success_at: datetime | None
    oldest_pending_at: datetime | None
    oldest_outbox_at: datetime | None
    connection_status: str
    connection_message: str

    def oldest_pending_seconds(self, now: datetime) -> float:
        oldest = min((t for t in (self.oldest_pending_at, self.oldest_outbox_at) if t is not None), default=None)
        return (now - oldest).total_seconds() if oldest else 0.0

    def worker_alive(self, now: datetime) -> bool:
        return self.worker_seen_at is not None and (
            now - self.worker_seen_at <= timedelta(seconds=settings.BRAZE_ALARM_WORKER_SECONDS))

    def stalled(self, now: datetime) -> bool:
        """Work has waited longer than the threshold and no worker has been seen recently."""
        return (self.oldest_pending_seconds(now) > settings.BRAZE_ALARM_PENDING_SECONDS
                and not self.worker_alive(now))


def liveness() -> Liveness:
    """Read the heartbeat, the oldest pending member and outbox item, and the connection's state."""
    beat = _heartbeat()
    connection = Connection.objects.filter(active=True).only("status", "last_message").first()
    return Liveness(
        worker_seen_at=beat.worker_seen_at if beat else None,
        last_success_at=beat.last_success_at if beat else None,
        oldest_pending_at=_oldest(
            MemberSyncState.objects.filter(status=SyncStatus.PENDING).aggregate(m=Min("dirty_since"))["m"],
            # Changes no worker folded yet (none may be running): read, not folded, on a health check.
            MemberChange.objects.aggregate(m=Min("changed_at"))["m"]),
        oldest_outbox_at=OutboxItem.objects.filter(status=OutboxStatus.PENDING).aggregate(m=Min("created_at"))["m"],
        connection_status=connection.status if connection else "none",
        connection_message=connection.last_message if connection else "",
    )


def sync_alarms(*, now: datetime | None = None, state: Liveness | None = None) -> list[Alarm]:
    """Each alarm, raised or not, with what a person should know."""
    now = now or timezone.now()
    state = state or liveness()
    attention = state.connection_status == ConnectionStatus.NEEDS_ATTENTION
    stalled = state.stalled(now)
    seen = (f"last seen {state.worker_seen_at.isoformat(timespec='seconds')}" if state.worker_seen_at
            else "never seen")
    return [
        Alarm(CONNECTION, attention,
              f"The Braze connection needs attention; nothing is sent until Connect succeeds. Braze said: "
              f"{state.connection_message or '(no message)'}" if attention
              else "The Braze connection works again."),
        Alarm(STALLED, stalled,
              f"Changes have waited {state.oldest_pending_seconds(now):.0f} s for Braze and no sync worker ran for "
              f"{settings.BRAZE_ALARM_WORKER_SECONDS} s (workers {seen}). Start `manage.py qcluster`." if stalled
              else "Sync workers are running again (or nothing waits)."),
    ]


def _oldest(*moments: datetime | None) -> datetime | None:
    return min((m for m in moments if m is not None), default=None)


# --- work upstream of the sync ----------------------------------------------------------------------

_backlogs: dict[str, Callable[[], tuple[int, datetime | None]]] = {}


def backlog_register(name: str, counter: Callable[[], tuple[int, datetime | None]]) -> None:
    """Let ``braze_status`` and the dashboard show work that will reach Braze but is not in the sync's queue
    yet: ``counter()`` gives how many items wait and when the oldest was made. The workflows register their
    trigger records (a worker killed while running them holds them until their lease ends)."""
    _backlogs[name] = counter


def backlogs(*, now: datetime) -> dict[str, dict[str, float]]:
    """Each registered backlog: ``{"waiting": n, "oldest_seconds": s}``."""
    shown = {}
    for name, counter in _backlogs.items():
        waiting, oldest = counter()
        shown[name] = {"waiting": waiting, "oldest_seconds": (now - oldest).total_seconds() if oldest else 0.0}
    return shown

