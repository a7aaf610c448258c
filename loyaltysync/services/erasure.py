"""Erasure (the right to be forgotten): deleting a member's personal data and history for good.

Policy (the README's "Members' data and consent" says the same):

- Deleted: the member row (profile, consent, custom fields, balances, last purchase), every loyalty event,
  every points ledger row, the admin's change history of the member, and whatever other apps keep about
  the member (they listen to ``member_erased``: the Braze sync state and outbox, workflow runs).
- Kept, without personal data: one ``ErasureRecord`` with when, by whom, through what, the counts of what
  was deleted, and the member's lifetime totals (points earned, spent and written off, purchases) for the
  program's accounts. The member id is kept only as a keyed one-way hash (HMAC-SHA256), which serves as a
  tombstone: the id cannot be enrolled again, and other apps check it before sending anything about it.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Iterable

from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import transaction

from ..errors import MemberErased, MemberNotFound
from ..models import ErasureRecord, LoyaltyEvent, Member, PointsTransaction
from ..signals import member_erased
from ..transient import retry_transient
from .validation import _source_check, _string_problem


def _hash_key() -> bytes:
    return _hash_key_of(getattr(settings, "LOYALTY_ERASURE_HASH_KEY", ""), settings.SECRET_KEY)


@functools.lru_cache(maxsize=4)
def _hash_key_of(configured: str, secret_key: str) -> bytes:
    """Derived once per setting (the sync hashes every member it sends)."""
    if configured:
        return configured.encode()
    # Derived, so development needs no setting; production sets its own key and never changes it.
    return hmac.new(secret_key.encode(), b"loyaltysync.erasure", hashlib.sha256).digest()


def member_id_hash(member_id: str) -> str:
    """The keyed one-way hash an erasure keeps of a member id (hex HMAC-SHA256)."""
    return _keyed_hash(_hash_key(), member_id)


def member_id_hashes(member_ids: Iterable[str]) -> dict[str, str]:
    """``member_id_hash`` of many ids, the key read once (the sync checks every member it sends): id -> hash."""
    key = _hash_key()
    return {member_id: _keyed_hash(key, member_id) for member_id in member_ids}


def _keyed_hash(key: bytes, member_id: str) -> str:
    # hmac.digest: OpenSSL's one-shot HMAC, the same value as hmac.new(...).hexdigest() without its objects.
    return hmac.digest(key, member_id.encode("utf-8", "surrogatepass"), "sha256").hex()


def member_id_erased(member_id: str) -> bool:
    """Whether a member with this id was erased."""
    return ErasureRecord.objects.filter(member_hash=member_id_hash(member_id)).exists()


def erased_id_check(member_id: str, path: str) -> None:
    """Raise ``MemberErased`` (naming ``path``) when this id was erased: an erased id is never enrolled again."""
    if member_id_erased(member_id):
        raise MemberErased(
            "This member id belongs to an erased member and cannot be used again.", field=path
        )


@retry_transient
def member_erase(*, member_id: str, erased_by: str, source: str) -> ErasureRecord:
    """Erase one member by the erasure policy (module docstring); returns the erasure record.

    Raises ``MemberNotFound`` when no member has this id (an id erased before is not found either).
    """
    _source_check(source)
    # Only ids that cannot be looked up are turned away here, not every id the rule refuses today: a member
    # enrolled before the rule grew stricter (an id of dots only, a formatting character) can still be erased.
    if not isinstance(member_id, str) or not 0 < len(member_id) <= 255 or _string_problem(member_id):
        raise MemberNotFound("No member with this id.", field="member_id")
    with transaction.atomic():
        member = Member.objects.select_for_update().filter(member_id=member_id).first()
        if member is None:
            raise MemberNotFound(f"No member with id {member_id!r}.", field="member_id")
        member_hash = member_id_hash(member.member_id)
        record = ErasureRecord.objects.create(
            member_hash=member_hash,
            erased_by=erased_by[:150],
            source=source,
            events_deleted=LoyaltyEvent.objects.filter(member=member).count(),
            ledger_rows_deleted=PointsTransaction.objects.filter(member=member).count(),
            points_earned=member.points_earned,
            points_spent=member.points_spent,
            points_forfeited=member.points_spendable + member.points_pending,
            purchase_count=member.purchase_count,
            purchase_total=member.purchase_total,
        )
        member_erased.send(sender=Member, member=member, member_hash=member_hash)
        # The ledger first: its rows point at events.
        PointsTransaction.objects.filter(member=member).delete()
        LoyaltyEvent.objects.filter(member=member).delete()
        LogEntry.objects.filter(
            content_type=ContentType.objects.get_for_model(Member), object_id=str(member.pk)
        ).delete()
        member.delete()
    return record
