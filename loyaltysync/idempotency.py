"""Idempotency keys: a client that sends a request again with the same key gets the first answer, and
nothing is done twice (as payment APIs do it).

A key belongs to one user and remembers a digest of the request it first came with; the same key with
another request is refused (``IdempotencyKeyReused``). A request is done in parts (one event, or each event
of a bulk request); each part's answer is a row inserted in the same transaction as the part's work, so a
part is done at most once even when two requests with the same key run at the same time (the second waits
for the first's row, then replays it), and a request cut off half way is finished by its retry. Keys expire
after ``KEY_TTL``: then the key may be used again, and ``idempotency_keys_prune`` deletes them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from .errors import IdempotencyKeyReused
from .models import IdempotencyKey, IdempotentResult
from .transient import retry_transient

KEY_TTL = dt.timedelta(hours=24)

# An answer as the caller stores it: (status, body). Opaque here.
Answer = tuple[int, Any]


def idempotency_key_claim(*, user: Any, key: str, request_digest: str, now: dt.datetime | None = None) -> IdempotencyKey:
    """The user's key for this request: created, or found with the same request digest.

    A key older than ``KEY_TTL`` is forgotten first (with its answers). Raises ``IdempotencyKeyReused``
    (naming the ``Idempotency-Key`` header) when the key was sent with a different request.
    """
    now = now or timezone.now()
    IdempotencyKey.objects.filter(user=user, key=key, created_at__lt=now - KEY_TTL).delete()
    try:
        with transaction.atomic():
            claimed, _ = IdempotencyKey.objects.get_or_create(
                user=user, key=key, defaults={"request_digest": request_digest, "created_at": now}
            )
    except IntegrityError:  # created meanwhile by a request with the same key
        claimed = IdempotencyKey.objects.get(user=user, key=key)
    if claimed.request_digest != request_digest:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was used with a different request in the last 24 hours; "
            "send a new key for a new request.",
            field="Idempotency-Key",
        )
    return claimed


def idempotent_answers(*, idempotency_key: IdempotencyKey) -> dict[int, Answer]:
    """The answers stored for the key so far: part -> (status, body)."""
    return {
        part: (status, body)
        for part, status, body in idempotency_key.results.values_list("part", "status", "body")
    }


def idempotent_run(
    *,
    idempotency_key: IdempotencyKey,
    part: int,
    work: Callable[[], Answer],
    answer_of_error: Callable[[Exception], Answer | None],
) -> tuple[Answer, bool]:
    """Does one part of a request once: returns ``(answer, replayed)``.

    ``work`` runs in one transaction with the insertion of the part's answer row; when another request
    inserted it first, its answer is returned (``replayed`` true) and ``work`` does not run. When ``work``
    raises, its transaction is rolled back; ``answer_of_error`` turns the error into an answer to remember
    (a refusal that would be the same next time), or ``None`` to raise it (a failure worth retrying).
    """
    try:
        return _part_do(idempotency_key, part, work)
    except Exception as error:
        answer = answer_of_error(error)
        if answer is None:
            raise
    return _part_store(idempotency_key, part, answer)


@retry_transient
def _part_do(idempotency_key: IdempotencyKey, part: int, work: Callable[[], Answer]) -> tuple[Answer, bool]:
    with transaction.atomic():
        try:
            with transaction.atomic():
                # The claim: a second request inserting the same part waits here until this one ends.
                row = IdempotentResult.objects.create(idempotency_key=idempotency_key, part=part, status=0, body={})
        except IntegrityError:
            return _stored(idempotency_key, part), True
        status, body = work()
        row.status, row.body = status, body
        row.save(update_fields=["status", "body"])
    return (status, body), False


@retry_transient
def _part_store(idempotency_key: IdempotencyKey, part: int, answer: Answer) -> tuple[Answer, bool]:
    try:
        with transaction.atomic():
            IdempotentResult.objects.create(idempotency_key=idempotency_key, part=part, status=answer[0], body=answer[1])
    except IntegrityError:  # a concurrent request answered this part first: its answer stands
        return _stored(idempotency_key, part), True
    return answer, False


def _stored(idempotency_key: IdempotencyKey, part: int) -> Answer:
    row = IdempotentResult.objects.get(idempotency_key=idempotency_key, part=part)
    return row.status, row.body


def idempotency_keys_prune(*, now: dt.datetime | None = None) -> int:
    """Deletes keys older than ``KEY_TTL`` with their answers; returns how many keys were deleted."""
    now = now or timezone.now()
    deleted, by_model = IdempotencyKey.objects.filter(created_at__lt=now - KEY_TTL).delete()
    return by_model.get(IdempotencyKey._meta.label, 0)
