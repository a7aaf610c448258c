"""Signals the loyalty domain sends about itself.

The domain never imports the Braze integration or the workflows; they listen here. A member's
``post_save`` covers single saves. Services that change many members without ``save()``
(``queryset.update()``, ``bulk_create``) send ``members_changed`` so that listeners still hear of it.
"""

from django.dispatch import Signal

# sender=Member, member_ids=list[int] (primary keys), fields=set[str] | None (None: any field)
members_changed = Signal()

# sender=LoyaltyEvent, event=LoyaltyEvent: a loyalty event was recorded (inside the transaction)
loyalty_event_recorded = Signal()

# sender=Member, member=Member (still loaded), member_hash=str: the member is being erased. Sent inside the
# erasure's transaction before the member's rows are deleted, so listeners can delete their own rows about
# the member and record what must be deleted elsewhere (e.g. its Braze profile).
member_erased = Signal()

# sender=CustomField, field=CustomField: what outside the domain refers to the field by its key. Receivers
# return a list of what uses it (text for people, e.g. "Braze mapping custom.size → shoe_size"); a custom
# field that something uses cannot be deleted until that use is removed.
custom_field_uses = Signal()


def custom_field_users(field) -> list[str]:
    """Everything that refers to ``field``, as its listeners describe it."""
    return [use for _, uses in custom_field_uses.send(sender=type(field), field=field) for use in uses or []]
