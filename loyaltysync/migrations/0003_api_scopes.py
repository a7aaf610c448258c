"""What an API token may do: three permissions and two groups (see ``loyaltysync.api.permissions``).

"API: events sender" may post loyalty events (a shop's checkout hook); "API: members reader" may read
members and their events (a reporting tool). Give a token's user one of the groups, or the permissions
directly. A user with none of the three keeps full access.

The permissions are not model permissions of one table, so they are created here (on the member and
loyalty event content types, so their names are ``loyaltysync.<codename>``).
"""

from django.db import migrations

EVENTS_SENDER = "API: events sender"
MEMBERS_READER = "API: members reader"

# codename -> (model of its content type, name)
PERMISSIONS = {
    "send_events": ("loyaltyevent", "Can send loyalty events through the API"),
    "read_members": ("member", "Can read members and their events through the API"),
    "write_members": ("member", "Can create and change members through the API"),
}
GROUPS = {EVENTS_SENDER: ["send_events"], MEMBERS_READER: ["read_members"]}


def scopes_ensure(apps, schema_editor=None) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")

    permissions = {}
    for codename, (model, name) in PERMISSIONS.items():
        content_type, _ = ContentType.objects.get_or_create(app_label="loyaltysync", model=model)
        permissions[codename], _ = Permission.objects.get_or_create(
            content_type=content_type, codename=codename, defaults={"name": name}
        )
    for group_name, codenames in GROUPS.items():
        group, _ = Group.objects.get_or_create(name=group_name)
        group.permissions.add(*(permissions[codename] for codename in codenames))


def scopes_remove(apps, schema_editor) -> None:
    apps.get_model("auth", "Group").objects.filter(name__in=list(GROUPS)).delete()
    apps.get_model("auth", "Permission").objects.filter(
        content_type__app_label="loyaltysync", codename__in=list(PERMISSIONS)
    ).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("loyaltysync", "0002_pointstransaction_pending"),
    ]

    operations = [migrations.RunPython(scopes_ensure, scopes_remove)]
