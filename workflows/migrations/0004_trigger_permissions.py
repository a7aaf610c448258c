"""Give the admin's roles their permissions on the new models: "Braze manager" edits triggers,
"Braze viewer" sees triggers and the runs waiting to resume. Safe to run again."""

from django.db import migrations

VIEWER = "Braze viewer"
MANAGER = "Braze manager"


def permissions_grant(apps, schema_editor) -> None:
    from django.contrib.auth.management import create_permissions

    app_config = apps.get_app_config("workflows")
    models_module, app_config.models_module = getattr(app_config, "models_module", None), True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = models_module

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    perms = Permission.objects.filter(content_type__app_label="workflows")
    view = list(perms.filter(codename__in=["view_trigger", "view_duerun"]))
    edit = list(perms.filter(codename__in=["add_trigger", "change_trigger", "delete_trigger"]))
    for group in Group.objects.filter(name=VIEWER):
        group.permissions.add(*view)
    for group in Group.objects.filter(name=MANAGER):
        group.permissions.add(*view, *edit)


class Migration(migrations.Migration):

    dependencies = [("workflows", "0003_triggers_and_steps")]

    operations = [migrations.RunPython(permissions_grant, migrations.RunPython.noop)]
