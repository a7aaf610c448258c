"""Signal receivers: they only record that something must be sent (in the same transaction) and
leave the rest to the worker. No HTTP, no payload building here."""

from django.db.models import ProtectedError
from django.db.models.signals import post_delete, post_migrate, post_save, pre_delete
from django.dispatch import receiver
from django_q.signals import post_spawn

from loyaltysync.models import CustomField, Member
from loyaltysync.signals import custom_field_users, custom_field_uses, member_erased, members_changed

from . import erasure, services
from .models import Connection, FieldMapping, MemberChange


@receiver(post_save, sender=Member, dispatch_uid="braze_member_saved")
def member_saved(sender, instance: Member, created: bool, raw: bool = False, update_fields=None, **kwargs):
    if raw:  # loaddata: the initial sync or a resync sends fixtures
        return
    changed = None if created else instance.changed_fields(among=update_fields)
    if services.sync_config().concerns(changed):
        services.member_sync_enqueue(member_ids=[instance.pk])


@receiver(members_changed, dispatch_uid="braze_members_changed")
def members_bulk_changed(sender, member_ids, fields=None, **kwargs):
    if services.sync_config().concerns(set(fields) if fields is not None else None):
        services.member_sync_enqueue(member_ids=member_ids)


@receiver(member_erased, dispatch_uid="braze_member_erased")
def member_erased_delete_profile(sender, member: Member, member_hash: str, **kwargs):
    """Record the Braze profile's deletion in the erasure's transaction (only where Braze was ever connected)."""
    MemberChange.objects.filter(member_id=member.pk).delete()  # nothing of the member is to be sent any more
    if Connection.objects.exists():
        erasure.deletion_record(external_id=member.member_id, member_hash=member_hash,
                                not_before=erasure.deletion_not_before(member.pk))
        services.flush_after_commit(erasure=True)


@receiver(custom_field_uses, dispatch_uid="braze_custom_field_uses")
def custom_field_mapped(sender, field: CustomField, **kwargs) -> list[str]:
    """The Braze mappings that send the field: deleting it would leave them sending nothing, silently."""
    mappings = FieldMapping.objects.filter(loyalty_field=f"custom.{field.key}").select_related("connection")
    return [f"sent to Braze by the mapping custom.{field.key} → {mapping.remote_field} of the connection "
            f"{mapping.connection}" for mapping in mappings]


@receiver(pre_delete, sender=CustomField, dispatch_uid="braze_custom_field_protected")
def custom_field_protected(sender, instance: CustomField, **kwargs):
    """Outside the admin too (a shell, a script): a mapped custom field is not deleted."""
    uses = custom_field_users(instance)
    if uses:
        raise ProtectedError(f"The custom field {instance.key} cannot be deleted: it is {'; '.join(uses)}. "
                             "Remove that first.", [instance])


@receiver([post_save, post_delete], sender=FieldMapping, dispatch_uid="braze_mapping_changed")
@receiver([post_save, post_delete], sender=Connection, dispatch_uid="braze_connection_changed")
@receiver([post_save, post_delete], sender=CustomField, dispatch_uid="braze_custom_field_changed")
def configuration_changed(**kwargs):
    services.sync_config_invalidate()


@receiver(post_spawn, dispatch_uid="braze_worker_started")
def worker_started(sender, proc_name=None, **kwargs):
    """A worker (re)starting looks for work left behind (e.g. by a worker that was killed)."""
    try:
        services.flush_request()
    except Exception:  # the database may not be migrated yet; the periodic flush covers it
        pass


@receiver(post_migrate, dispatch_uid="braze_schedules")
def ensure_schedules(sender, **kwargs):
    if sender.name == "braze_integration":
        services.schedules_ensure()
