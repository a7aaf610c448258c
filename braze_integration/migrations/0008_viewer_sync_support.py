"""The Braze groups see what sync support needs, not every member's ledger and events.

Sync support works with the sync state, the requests, the outbox, the dead letters and the member
page's Braze panel; the points ledger and the loyalty events are the program's business. The view
permissions 0004 gave on them are taken back from both groups (a database made before keeps none).
"""

from django.db import migrations

GROUPS = ["Braze viewer", "Braze manager"]
NOT_FOR_SYNC_SUPPORT = {"loyaltysync": ["loyaltyevent", "pointstransaction"]}


def _permissions(apps):
    Permission = apps.get_model("auth", "Permission")
    return [p for app, models in NOT_FOR_SYNC_SUPPORT.items() for model in models
            for p in Permission.objects.filter(content_type__app_label=app, content_type__model=model,
                                               codename=f"view_{model}")]


def groups_trim(apps, schema_editor=None) -> None:
    permissions = _permissions(apps)
    for group in apps.get_model("auth", "Group").objects.filter(name__in=GROUPS):
        group.permissions.remove(*permissions)


def groups_untrim(apps, schema_editor) -> None:
    permissions = _permissions(apps)
    for group in apps.get_model("auth", "Group").objects.filter(name__in=GROUPS):
        group.permissions.add(*permissions)


class Migration(migrations.Migration):

    dependencies = [
        ("braze_integration", "0007_operations"),
    ]

    operations = [migrations.RunPython(groups_trim, groups_untrim)]
