"""Give the admin's roles (created by braze_integration) their workflow permissions.

"Braze viewer" sees workflows and their logs; "Braze manager" also edits workflows, conditions,
actions and values. Whether braze_integration's group migration already saw the workflow models
depends on the order migrations run in, so this one makes sure. Safe to run again.
"""

from django.db import migrations

VIEWER = "Braze viewer"
MANAGER = "Braze manager"
EDITED = ["workflow", "condition", "action", "actionvalue"]


def permissions_grant(apps, schema_editor) -> None:
    from django.contrib.auth.management import create_permissions

    app_config = apps.get_app_config("workflows")
    models_module, app_config.models_module = getattr(app_config, "models_module", None), True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = models_module

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    workflow_perms = Permission.objects.filter(content_type__app_label="workflows")
    view = list(workflow_perms.filter(codename__startswith="view_"))
    edit = list(workflow_perms.filter(codename__in=[f"{action}_{model}" for model in EDITED
                                                    for action in ("add", "change", "delete")]))
    for group in Group.objects.filter(name=VIEWER):
        group.permissions.add(*view)
    for group in Group.objects.filter(name=MANAGER):
        group.permissions.add(*view, *edit)


class Migration(migrations.Migration):

    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("workflows", "0001_initial"),
        ("braze_integration", "0004_admin_groups"),
    ]

    operations = [migrations.RunPython(permissions_grant, migrations.RunPython.noop)]
