"""The admin's two roles as groups.

"Braze viewer": sees members, events, the Braze connection, mappings and logs, and workflows.
"Braze manager": a viewer who also edits the connection and its field mappings, presses Connect,
sends (Sync now, retry, resync) and edits workflows.

Permissions are created here first (Django creates them only after all migrations) so the groups
can be filled on a fresh database. Workflow models are included when the workflows app has models
at this point of the migration graph (``get_app_config`` is guarded).
"""

from django.db import migrations

VIEWER = "Braze viewer"
MANAGER = "Braze manager"

VIEWED = {
    "loyaltysync": ["member", "loyaltyevent", "pointstransaction", "tier", "customfield"],
    "braze_integration": ["connection", "fieldmapping", "membersyncstate", "outboxitem", "syncrequest",
                          "syncrequestmember", "resyncrun"],
}
EDITED = {"braze_integration": ["connection", "fieldmapping"]}
EXTRA = [("braze_integration", "connection", "verify_connection")]
WORKFLOWS = "workflows"


def _workflow_models(apps) -> list[str]:
    try:
        return [model._meta.model_name for model in apps.get_app_config(WORKFLOWS).get_models()]
    except LookupError:
        return []


def groups_ensure(apps, schema_editor=None) -> None:
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        models_module, app_config.models_module = getattr(app_config, "models_module", None), True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = models_module

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")

    def perms(app_label: str, model: str, actions: list[str]):
        return Permission.objects.filter(content_type__app_label=app_label, content_type__model=model,
                                         codename__in=[f"{action}_{model}" for action in actions])

    workflow_models = _workflow_models(apps)
    viewed = {**VIEWED, WORKFLOWS: workflow_models}
    edited = {**EDITED, WORKFLOWS: workflow_models}

    view = [p for app, models in viewed.items() for model in models for p in perms(app, model, ["view"])]
    edit = [p for app, models in edited.items() for model in models
            for p in perms(app, model, ["add", "change", "delete"])]
    extra = [p for app, model, codename in EXTRA for p in Permission.objects.filter(
        content_type__app_label=app, content_type__model=model, codename=codename)]

    viewer, _ = Group.objects.get_or_create(name=VIEWER)
    viewer.permissions.add(*view)
    manager, _ = Group.objects.get_or_create(name=MANAGER)
    manager.permissions.add(*view, *edit, *extra)


def groups_remove(apps, schema_editor) -> None:
    apps.get_model("auth", "Group").objects.filter(name__in=[VIEWER, MANAGER]).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("loyaltysync", "0002_pointstransaction_pending"),
        ("braze_integration", "0003_syncrequest_claim_token"),
    ]

    operations = [migrations.RunPython(groups_ensure, groups_remove)]
