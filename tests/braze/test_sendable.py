"""What a mapped field could never send is refused at the door (API, admin, imports) with a 400 naming the
field and Braze's rule; a value that became unsendable later holds back only itself (sandbox over real HTTP)."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from braze_integration import queue, services
from braze_integration.models import FieldMapping, MemberSyncState, SyncStatus
from loyaltysync import services as loyalty
from loyaltysync.models import CustomField, Member
from tests.api_scopes import grant_every_api_scope

from .members import make_member

BIG_CHECKOUT_ITEMS = [
    {"product_id": f"sku-{i}", "product_name": f"{i:03d}" + "n" * 237, "price": 1, "quantity": 1} for i in range(500)]


@pytest.fixture
def api(braze_connection) -> APIClient:
    user = grant_every_api_scope(get_user_model().objects.create_user(username="shop"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def preferences(braze_connection) -> CustomField:
    """A custom object field, mapped to a Braze object attribute."""
    field = CustomField.objects.create(key="preferences", label="Preferences", type="object")
    FieldMapping.objects.create(connection=braze_connection, loyalty_field="custom.preferences",
                                remote_field="loyalty_preferences", position=20)
    services.sync_config_invalidate()
    return field


def enrol(member_id: str = "m-1") -> Member:
    member, _ = loyalty.event_record(member_id=member_id, action="opt_in", data={"first_name": "Ada"}, source="api")
    return member


def test_a_checkout_whose_items_braze_could_never_take_is_refused_with_400_naming_the_field_and_the_rule(
        api, sandbox):
    enrol()

    response = api.post("/api/v1/events", {"customer": "m-1", "action": "checkout", "data": {
        "transaction_id": "t-big", "total": 500, "currency": "EUR", "items": BIG_CHECKOUT_ITEMS}}, format="json")

    assert response.status_code == 400, response.content
    fields = response.json()["error"]["fields"]
    assert list(fields) == ["data.items"]  # the checkout's own data, where the integrator can fix it
    assert "loyalty_last_items" in fields["data.items"][0] and "Braze takes at most 100 KB" in fields["data.items"][0]
    assert not Member.objects.get().last_purchase  # nothing was recorded
    # Points changes still reach Braze: the member is not stuck.
    loyalty.event_record(member_id="m-1", action="point_add", data={"points": 30}, source="api")
    queue.changes_fold()
    assert MemberSyncState.objects.get().status != SyncStatus.FAILED


def test_a_checkout_over_100_kb_only_in_utf_8_is_refused_at_the_door_too(api, sandbox):
    """Few nodes, each of 4-byte characters: 106 KB as Braze counts it, though fewer than the nodes
    an ASCII value needs to reach 100 KB (it was let in, and Braze refused the member's whole object)."""
    enrol()
    emoji = "\U0001F600"
    items = [{"product_id": emoji * 128, "product_name": emoji * 255, "price": 1, "quantity": 1,
              **{str(k) + emoji * 254: emoji * 255 for k in range(5)}} for _ in range(9)]

    response = api.post("/api/v1/events", {"customer": "m-1", "action": "checkout", "data": {
        "transaction_id": "t-emoji", "total": 9, "currency": "EUR", "items": items}}, format="json")

    assert response.status_code == 400, response.content
    assert "Braze takes at most 100 KB" in response.json()["error"]["fields"]["data.items"][0]
    assert not Member.objects.get().last_purchase


@pytest.mark.parametrize("value", [{"inc": 5}, {"add": ["x"]}, {"remove": ["x"]}, {"add": ["x"], "remove": ["y"]}])
def test_a_patch_of_a_custom_object_braze_would_read_as_an_operation_is_refused_with_400(
        api, preferences, value):
    enrol()

    response = api.patch("/api/v1/members/m-1/", {"custom_fields": {"preferences": value}}, format="json")

    assert response.status_code == 400, response.content
    [problem] = response.json()["error"]["fields"]["custom_fields.preferences"]
    assert "loyalty_preferences" in problem
    assert Member.objects.get().custom_fields == {}


def test_a_profile_event_braze_could_never_take_names_the_events_data(api, preferences):
    enrol()

    response = api.post("/api/v1/events", {"customer": "m-1", "action": "profile", "data": {
        "last_name": "Lovelace", "custom_fields": {"preferences": {"inc": 5}}}}, format="json")

    assert response.status_code == 400, response.content
    [problem] = response.json()["error"]["fields"]["data.custom_fields.preferences"]
    assert "loyalty_preferences" in problem and "update operation" in problem
    member = Member.objects.get()
    assert (member.last_name, member.custom_fields) == ("", {})  # nothing of the event was recorded


def test_a_custom_object_braze_takes_is_accepted_and_synced(api, preferences, sandbox, q_sync):
    enrol()

    response = api.patch("/api/v1/members/m-1/", {"custom_fields": {"preferences": {"inc": 5, "channel": "sms"}}},
                         format="json")

    assert response.status_code == 200, response.content
    assert sandbox.user("m-1")["attributes"]["loyalty_preferences"] == {"inc": 5, "channel": "sms"}


def test_the_admin_shows_the_braze_rule_on_the_field(client, preferences):
    client.force_login(get_user_model().objects.create_superuser(username="admin", email="a@example.com",
                                                                 password=None))
    member = enrol()

    response = client.post(f"/admin/loyaltysync/member/{member.pk}/change/", {
        "member_id": "m-1", "status": "active", "first_name": "Ada", "last_name": "", "email": "", "phone": "",
        "birth_date": "", "gender": "", "language": "", "country": "",
        "custom_fields": '{"preferences": {"inc": 1}}'})

    assert response.status_code == 200
    [message] = response.context["adminform"].form.errors["custom_fields"]
    assert message.startswith("custom_fields.preferences: cannot be sent to Braze as loyalty_preferences")
    assert Member.objects.get().custom_fields == {}


def test_an_import_row_braze_could_never_take_is_reported_and_the_others_kept(tmp_path, preferences):
    path = tmp_path / "members.jsonl"
    path.write_text('{"member_id": "m-1", "custom_fields": {"preferences": {"channel": "sms"}}}\n'
                    '{"member_id": "m-2", "custom_fields": {"preferences": {"inc": 1}}}\n')
    err = StringIO()

    with pytest.raises(CommandError, match="1 rejected"):
        call_command("import_members", str(path), stdout=StringIO(), stderr=err)

    assert "members.jsonl:2: custom_fields.preferences: cannot be sent to Braze as loyalty_preferences" in err.getvalue()
    assert list(Member.objects.values_list("member_id", flat=True)) == ["m-1"]


def test_without_a_braze_connection_nothing_is_refused_for_braze(db):
    CustomField.objects.create(key="preferences", label="Preferences", type="object")
    member = enrol()

    loyalty.member_update(member=member, custom_fields={"preferences": {"inc": 1}}, source="api")

    assert Member.objects.get().custom_fields == {"preferences": {"inc": 1}}


@pytest.mark.usefixtures("q_sync")
def test_given_a_value_that_became_unsendable_then_the_other_attributes_go_and_the_panel_names_it(
        braze_connection, sandbox, admin_client):
    # Stored before its mapping existed (or by hand): the door never saw it against this mapping.
    member = make_member("late-1", last_purchase={"items": BIG_CHECKOUT_ITEMS})

    profile = sandbox.user("late-1")
    state = MemberSyncState.objects.get(pk=member.pk)
    assert profile["attributes"]["loyalty_first_name"] == "Ada"
    assert "loyalty_last_items" not in profile["attributes"]
    assert state.status == SyncStatus.SYNCED
    assert state.last_error_kind == "unsendable"
    assert "loyalty_last_items: is 152,891 bytes of JSON; Braze takes at most 100 KB" in state.last_error
    page = admin_client.get(f"/admin/loyaltysync/member/{member.pk}/change/").content.decode()
    assert 'id="braze-unsendable"' in page and "loyalty_last_items: is 152,891 bytes of JSON" in page

    member.points_spendable = 999
    member.save()

    assert sandbox.user("late-1")["attributes"]["loyalty_points"] == 999


def test_a_member_id_too_long_for_brazes_external_id_is_refused_with_400(api):
    response = api.post("/api/v1/events", {"customer": "\U0001F600" * 255, "action": "opt_in", "data": {}},
                        format="json")

    assert response.status_code == 400, response.content
    [problem] = response.json()["error"]["fields"]["member_id"]
    assert problem == "cannot be Braze's external_id: must be at most 987 bytes"
    assert not Member.objects.exists()


@pytest.fixture
def contact_mappings(braze_connection):
    for position, (loyalty_field, remote_field) in enumerate([("email", "email"), ("phone", "phone")], start=30):
        FieldMapping.objects.create(connection=braze_connection, loyalty_field=loyalty_field,
                                    remote_field=remote_field, position=position)
    services.sync_config_invalidate()


@pytest.mark.parametrize(("field", "value"), [("email", "ada@localhost"), ("phone", "n/a")])
def test_an_email_or_phone_braze_refuses_is_refused_at_the_door_when_mapped(api, contact_mappings, sandbox,
                                                                              field, value):
    response = api.post("/api/v1/members/", {"member_id": "m-9", "first_name": "Ada", field: value}, format="json")

    assert response.status_code == 400, response.content
    assert list(response.json()["error"]["fields"]) == [field]
    assert f"{value!r} is not" in response.json()["error"]["fields"][field][0]
    assert not Member.objects.filter(member_id="m-9").exists()


@pytest.mark.usefixtures("q_sync")
def test_an_email_and_phone_braze_refuses_hold_back_only_themselves(contact_mappings, sandbox):
    """Stored before their mappings existed: Braze would refuse the member's whole attributes object
    for either of them (the points and the tier too); only the two are left out, and named."""
    member = make_member("late-2", email="ada@localhost", phone="n/a", points_spendable=700)

    attributes = sandbox.user("late-2")["attributes"]
    state = MemberSyncState.objects.get(pk=member.pk)
    assert attributes["loyalty_points"] == 700 and attributes["loyalty_first_name"] == "Ada"
    assert "email" not in attributes and "phone" not in attributes
    assert state.status == SyncStatus.SYNCED and state.last_error_kind == "unsendable"
    assert "email: 'ada@localhost' is not an e-mail address Braze takes" in state.last_error
    assert "phone: 'n/a' is not a phone number Braze takes" in state.last_error
