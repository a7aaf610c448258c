"""Erased members in Braze: deleting their profiles with ``POST /users/delete``, and the tombstones that keep
anything about them from being sent again.

When the loyalty app erases a member (``loyaltysync.signals.member_erased``), a ``BrazeDeletion`` row is
written in the same transaction. The flush tasks send due deletions before any member (batches of at most
50 external ids), under the connection's rate limiter; Braze's answer decides each batch's fate through
``errors.outcome_of`` as for ``/users/track``: a 5xx or timeout is retried with backoff, a 429 waits, a 401
or 403 (a key without the ``users.delete`` permission) pauses the connection until Connect succeeds.

Tombstones: the loyalty app's ``ErasureRecord`` holds a keyed hash of every erased member id. The sync checks
it after building a batch (a member erased since its row was read is left out) and again after every answer
(a request that was already on the wire when the member was erased may have recreated the profile: its
deletion is sent again). So nothing sent after the erasure outlives it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from loyaltysync.models import ErasureRecord
from loyaltysync.services import member_id_hash, member_id_hashes
from loyaltysync.sql_lists import one_param

from . import errors, queue, ratelimit
from .client import MAX_DELETE_IDS, BrazeClient, TrackResult
from .errors import Action
from .models import BrazeDeletion, Connection, ConnectionStatus, DeletionStatus, MemberSyncState, SyncRequest

logger = logging.getLogger(__name__)


def deletion_record(*, external_id: str, member_hash: str, not_before: datetime | None = None) -> BrazeDeletion:
    """Record, in the erasure's transaction, that this profile must be deleted in Braze (not before
    ``not_before``, when given)."""
    deletion, _ = BrazeDeletion.objects.update_or_create(
        member_hash=member_hash,
        defaults={"external_id": external_id, "status": DeletionStatus.PENDING, "next_attempt_at": not_before},
    )
    return deletion


def deletion_not_before(member_pk: int) -> datetime | None:
    """When an erased member's deletion may go: after the lease of a claim that holds it (plus the time
    a request sent at the lease's end may take), since that worker may have requests on their way. The
    worker brings it forward when its claim is over (``Deliverer._erased_while_sending``); if it died,
    the deletion still comes after anything it sent."""
    held_until = (MemberSyncState.objects.filter(pk=member_pk, claim_token__isnull=False)
                  .values_list("claimed_until", flat=True).first())
    if held_until is None or held_until <= timezone.now():
        return None
    return held_until + queue.answer_wait()


# How far before a full check ``tombstoned(since=...)`` looks back: an erasure's time is taken when its
# transaction starts, on its own machine's clock, and it may commit after the check read the table.
TOMBSTONE_MARGIN = timedelta(minutes=5)


def tombstoned(external_ids: Iterable[str], *, since: datetime | None = None) -> set[str]:
    """The external ids among these that belong to erased members. With ``since`` (the time of a full
    check of the same ids, less ``TOMBSTONE_MARGIN``), only erasures from then on are read: one indexed
    range read, and no hashing while there are none."""
    ids = set(external_ids)
    if not ids:
        return set()
    if since is not None:
        recent = set(ErasureRecord.objects.filter(erased_at__gte=since).values_list("member_hash", flat=True))
        return {external_id for external_id, hashed in member_id_hashes(ids).items() if hashed in recent} if recent else set()
    by_hash = {hashed: external_id for external_id, hashed in member_id_hashes(ids).items()}
    erased = ErasureRecord.objects.filter(member_hash__in=one_param(by_hash, sql_type="text")).values_list("member_hash", flat=True)
    return {by_hash[member_hash] for member_hash in erased}


def deletions_repeat(external_ids: Iterable[str]) -> int:
    """A request carrying these erased members reached Braze after (or while) they were erased: delete their
    profiles again. Returns how many deletions were queued again."""
    ids = list(external_ids)
    for external_id in ids:
        deletion_record(external_id=external_id, member_hash=member_id_hash(external_id))
    if ids:
        from .services import flush_after_commit  # services imports this module

        flush_after_commit(erasure=True)
        logger.warning("%d erased member(s) were in a request already on its way; their deletion is sent again.",
                       len(ids))
    return len(ids)


def _due(now) -> Q:
    return (Q(status=DeletionStatus.PENDING)
            & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
            & (Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)))


def deletions_due_exist() -> bool:
    return BrazeDeletion.objects.filter(_due(timezone.now())).exists()


def _claim(limit: int) -> tuple[uuid.UUID, list[BrazeDeletion]]:
    token, now = uuid.uuid4(), timezone.now()
    with transaction.atomic():
        ids = list(BrazeDeletion.objects.filter(_due(now)).order_by("created_at", "id")
                   .select_for_update(skip_locked=True).values_list("pk", flat=True)[:limit])
        BrazeDeletion.objects.filter(pk__in=ids).update(claim_token=token, claimed_until=now + queue.claim_lease())
    return token, list(BrazeDeletion.objects.filter(claim_token=token).order_by("pk"))


def _release(token: uuid.UUID) -> None:
    BrazeDeletion.objects.filter(claim_token=token).update(claim_token=None, claimed_until=None)


def _auth_message(err: errors.BrazeError) -> str:
    if err.status == 403:
        return (f"The API key lacks the users.delete permission (needed to delete erased members' profiles). "
                f"Braze said: {err.message} (HTTP 403). Sending is paused; give the key the permission and press "
                "Connect.")
    return errors.auth_message(err)


def deletions_deliver(connection: Connection, client: BrazeClient, *, backoff) -> tuple[int, object | None]:
    """Send due deletions in batches of at most 50 until none is due or sending must stop.

    Returns (profiles Braze deleted, a stop or None): the stop is ``(reason, wait seconds)`` for the flush
    loop, as for member syncs. ``backoff(attempts)`` gives the retry delay.
    """
    deleted = 0
    while True:
        token, batch = _claim(MAX_DELETE_IDS)
        if not batch:
            return deleted, None
        try:
            ratelimit.acquire(connection)
        except TimeoutError:
            _release(token)
            return deleted, ("rate limit budget exhausted", 1.0)
        request = SyncRequest.objects.create(connection=connection, trigger="erasure", claim_token=token)
        try:
            answer: TrackResult | errors.BrazeError = client.delete_users([d.external_id for d in batch])
        except errors.BrazeError as err:
            answer = err
        except Exception:
            _release(token)
            raise
        outcome = errors.outcome_of(answer)
        with transaction.atomic():
            SyncRequest.objects.filter(pk=request.pk).update(
                outcome=outcome.log_as, http_status=answer.status, message=answer.message[:2000],
                duration_ms=answer.duration_ms, maybe_delivered=outcome.maybe_delivered)
            stop = _record(connection, token, batch, request, answer, outcome, backoff)
        if isinstance(answer, TrackResult):
            deleted += int(answer.body.get("deleted") or 0)
        if stop is not None:
            return deleted, stop


def _record(connection, token, batch, request, answer, outcome, backoff):
    now = timezone.now()
    claimed = BrazeDeletion.objects.filter(claim_token=token)
    match outcome.action:
        case Action.SENT | Action.FAIL_INDEXED:
            # Braze names no objects on /users/delete: a 2xx means every id was queued for deletion.
            claimed.update(status=DeletionStatus.DELETED, external_id="", sent_at=now, http_status=answer.status,
                           message=_answer_text(answer), request=request, times_sent=F("times_sent") + 1,
                           attempts=F("attempts") + 1, claim_token=None, claimed_until=None)
            return None
        case Action.WAIT:
            _pause(connection, outcome.wait, outcome.message)
            claimed.update(claim_token=None, claimed_until=None, http_status=answer.status, message=outcome.message)
            return ("rate limited", outcome.wait)
        case Action.PAUSE:
            message = _auth_message(answer)
            Connection.objects.filter(pk=connection.pk).update(
                status=ConnectionStatus.NEEDS_ATTENTION, last_message=message, last_checked_at=now)
            claimed.update(claim_token=None, claimed_until=None, http_status=answer.status, message=message,
                           request=request)
            return ("connection needs attention", 0.0)
        case Action.RETRY:
            highest = 0
            for deletion in batch:
                attempts = deletion.attempts + 1
                highest = max(highest, attempts)
                BrazeDeletion.objects.filter(pk=deletion.pk).update(
                    attempts=attempts, next_attempt_at=now + timedelta(seconds=backoff(attempts)),
                    http_status=answer.status, message=f"Retrying: {outcome.message}", request=request,
                    claim_token=None, claimed_until=None)
            _pause(connection, backoff(highest), f"Braze did not answer properly: {outcome.message}")
            return ("Braze unavailable", 1.0)
        case _:  # SPLIT, DROP: Braze refused the request itself; kept (with the id) for a person to look at
            claimed.update(status=DeletionStatus.FAILED, http_status=answer.status, message=outcome.message[:2000],
                           request=request, attempts=F("attempts") + 1, claim_token=None, claimed_until=None)
            return None


def _answer_text(answer: TrackResult) -> str:
    deleted = answer.body.get("deleted")
    return f"{answer.message} (deleted: {deleted})" if deleted is not None else answer.message


def _pause(connection: Connection, seconds: float, message: str) -> None:
    until = timezone.now() + timedelta(seconds=max(0.0, seconds))
    Connection.objects.filter(pk=connection.pk).filter(Q(paused_until__isnull=True) | Q(paused_until__lt=until)) \
        .update(paused_until=until, last_message=message[:2000])
