"""Signal receivers: they record that workflows may have to run (in the same transaction) and
nothing else. No rule evaluation, no payload building, no HTTP: the task does that after commit."""

from django.db.models.signals import post_delete, post_migrate, post_save
from django.dispatch import receiver

from loyaltysync.models import Member
from loyaltysync.signals import loyalty_event_recorded

from . import services
from .models import Trigger, Workflow


@receiver(loyalty_event_recorded, dispatch_uid="workflows_event_recorded")
def event_recorded(sender, event, **kwargs):
    services.trigger_record_event(event=event)


@receiver(post_save, sender=Member, dispatch_uid="workflows_member_saved")
def member_saved(sender, instance: Member, created: bool, raw: bool = False, update_fields=None, **kwargs):
    if raw or created:  # fixtures are not changes; a new member is an enrolment (its opt_in event)
        return
    services.trigger_record_member_change(member=instance, update_fields=update_fields)


@receiver([post_save, post_delete], sender=Workflow, dispatch_uid="workflows_workflow_changed")
@receiver([post_save, post_delete], sender=Trigger, dispatch_uid="workflows_trigger_changed")
def workflow_changed(**kwargs):
    services.workflow_config_changed()


@receiver(post_migrate, dispatch_uid="workflows_schedules")
def ensure_schedules(sender, **kwargs):
    if sender.name == "workflows":
        services.schedules_ensure()
