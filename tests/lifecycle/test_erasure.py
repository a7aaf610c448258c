"""Erasure (right to be forgotten) through the API, the admin and the command: what goes, what stays."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.management import CommandError, call_command
from django.forms.models import model_to_dict

from loyaltysync import services
from loyaltysync.models import ErasureRecord, LoyaltyEvent, Member, PointsTransaction

pytestmark = pytest.mark.django_db

MEMBERS = "/api/v1/members/"


@pytest.fixture
def ada(enrol, record):
    enrol("M-1", first_name="Ada", last_name="Lovelace", email="ada@example.com", phone="+44 20 1234",
          consent_email="opted_in")
    record("M-1", "checkout", transaction_id="T-1", total=120, currency="EUR",
           items=[{"product_id": "p-1", "product_name": "Socks", "price": 120, "quantity": 1}])
    record("M-1", "point_spend", points=20)
    enrol("M-2", first_name="Grace")
    return Member.objects.get(member_id="M-1")


def test_erasure_deletes_the_member_its_events_ledger_and_history_and_keeps_anonymous_totals(ada, admin_user):
    # Given a member with events, ledger rows and an admin change in its history
    LogEntry.objects.create(user=admin_user, content_type=ContentType.objects.get_for_model(Member),
                            object_id=str(ada.pk), object_repr=str(ada), action_flag=CHANGE,
                            change_message="Changed email (ada@example.com).")

    # When it is erased
    record = services.member_erase(member_id="M-1", erased_by="dpo", source="admin")

    # Then nothing of it is left but the record, which holds no personal data
    assert not Member.objects.filter(member_id="M-1").exists()
    assert not LoyaltyEvent.objects.filter(member_id=ada.pk).exists()
    assert not PointsTransaction.objects.filter(member_id=ada.pk).exists()
    assert not LogEntry.objects.filter(object_id=str(ada.pk), content_type__model="member").exists()
    assert (record.events_deleted, record.ledger_rows_deleted) == (3, 2)  # opt_in, checkout, point_spend
    assert (record.points_earned, record.points_spent, record.points_forfeited) == (120, 20, 100)
    assert record.purchase_count == 1 and record.purchase_total == 120
    assert record.member_hash == services.member_id_hash("M-1") and len(record.member_hash) == 64
    stored = " ".join(str(value) for value in model_to_dict(record).values())
    for personal in ("M-1", "Ada", "Lovelace", "ada@example.com", "1234"):
        assert personal not in stored
    # And the other member is untouched
    assert Member.objects.filter(member_id="M-2").exists()


@pytest.mark.parametrize("member_id", ["..", "M-\u200b1"])
def test_a_member_whose_id_the_rule_refuses_now_can_still_be_erased(member_id):
    """Given a member enrolled before ids of dots only or with formatting characters were refused, when it is
    erased, then it is gone."""
    Member.objects.create(member_id=member_id)

    services.member_erase(member_id=member_id, erased_by="dpo", source="admin")

    assert not Member.objects.filter(member_id=member_id).exists()


def test_the_hash_is_keyed_one_way_and_stable(settings):
    settings.LOYALTY_ERASURE_HASH_KEY = "key-one"
    first = services.member_id_hash("M-1")
    assert first == services.member_id_hash("M-1") and first != services.member_id_hash("M-2")
    settings.LOYALTY_ERASURE_HASH_KEY = "key-two"
    assert services.member_id_hash("M-1") != first  # without the key, the id cannot be tried against it


def test_many_ids_hash_as_each_does_alone(settings):
    import hashlib
    import hmac

    settings.LOYALTY_ERASURE_HASH_KEY = "key-one"
    ids = ["M-1", "M-2", "é-\U0001f600"]

    assert services.member_id_hashes(ids) == {member_id: services.member_id_hash(member_id) for member_id in ids}
    # HMAC-SHA256 with the configured key, in hex: records written before stay findable.
    assert services.member_id_hash("M-1") == hmac.new(b"key-one", b"M-1", hashlib.sha256).hexdigest()


def test_an_erased_id_cannot_be_enrolled_again(api, ada):
    services.member_erase(member_id="M-1", erased_by="dpo", source="api")

    by_event = api.post("/api/v1/events", {"customer": "M-1", "action": "opt_in"}, format="json")
    by_create = api.post(MEMBERS, {"member_id": "M-1"}, format="json")
    late_checkout = api.post("/api/v1/events", {"customer": "M-1", "action": "checkout", "data": {
        "transaction_id": "T-9", "total": 10, "currency": "EUR"}}, format="json")

    assert by_event.status_code == 409 and by_event.json()["error"]["code"] == "member_erased"
    assert "customer" in by_event.json()["error"]["fields"]
    assert by_create.status_code == 409 and "member_id" in by_create.json()["error"]["fields"]
    assert late_checkout.status_code == 404
    assert not Member.objects.filter(member_id="M-1").exists()


# --- the API ------------------------------------------------------------------------------------------


def test_delete_erases_with_the_erase_members_permission(eraser_api, ada):
    response = eraser_api.delete(f"{MEMBERS}M-1/")

    assert response.status_code == 204 and response.content == b""
    assert not Member.objects.filter(member_id="M-1").exists()
    assert ErasureRecord.objects.get().erased_by == "privacy-bot"
    assert ErasureRecord.objects.get().source == "api"
    # Erasing again (or an unknown member) is a plain 404
    assert eraser_api.delete(f"{MEMBERS}M-1/").status_code == 404


def test_delete_without_the_permission_is_refused_even_for_unscoped_tokens(api, ada):
    response = api.delete(f"{MEMBERS}M-1/")  # a token with full access to everything else

    assert response.status_code == 403
    assert "loyaltysync.erase_members" in response.json()["error"]["message"]
    assert Member.objects.filter(member_id="M-1").exists()


def test_an_erase_only_token_cannot_read_or_change_members(eraser_api, ada):
    assert eraser_api.get(f"{MEMBERS}M-1/").status_code == 403
    assert eraser_api.patch(f"{MEMBERS}M-1/", {"first_name": "X"}, format="json").status_code == 403


# --- the admin ------------------------------------------------------------------------------------------


def test_the_admin_action_asks_for_confirmation_then_erases(privacy_officer_client, ada):
    changelist = "/admin/loyaltysync/member/"
    asked = privacy_officer_client.post(changelist, {"action": "erase_members", "_selected_action": [ada.pk]})
    assert asked.status_code == 200
    assert b"cannot be undone" in asked.content and b"M-1" in asked.content
    assert Member.objects.filter(member_id="M-1").exists()  # nothing happened yet

    done = privacy_officer_client.post(
        changelist, {"action": "erase_members", "_selected_action": [ada.pk], "confirm": "yes"}, follow=True)

    assert b"Erased 1 member(s)." in done.content
    assert not Member.objects.filter(member_id="M-1").exists()
    assert ErasureRecord.objects.get().erased_by == "dpo"


def test_staff_without_the_permission_have_no_erase_action(staff_client, ada):
    page = staff_client.get("/admin/loyaltysync/member/")
    assert page.status_code == 200
    assert b"erase_members" not in page.content
    refused = staff_client.post("/admin/loyaltysync/member/", {
        "action": "erase_members", "_selected_action": [ada.pk], "confirm": "yes"})
    assert refused.status_code in (200, 302)
    assert Member.objects.filter(member_id="M-1").exists()


def test_the_erasure_log_is_read_only_and_finds_a_record_by_member_id(privacy_officer_client, ada):
    services.member_erase(member_id="M-1", erased_by="dpo", source="admin")
    record = ErasureRecord.objects.get()

    found = privacy_officer_client.get("/admin/loyaltysync/erasurerecord/", {"q": "M-1"})
    page = privacy_officer_client.get(f"/admin/loyaltysync/erasurerecord/{record.pk}/change/")

    assert record.member_hash[:16].encode() in found.content
    assert b'name="member_hash"' not in page.content  # shown, not editable
    assert privacy_officer_client.get("/admin/loyaltysync/erasurerecord/add/").status_code == 403
    assert privacy_officer_client.post(f"/admin/loyaltysync/erasurerecord/{record.pk}/delete/").status_code == 403


# --- the command ------------------------------------------------------------------------------------------


def test_the_command_erases_ids_and_a_file_and_fails_on_unknown_ones(ada, tmp_path, enrol):
    enrol("M-3")
    ids = tmp_path / "erase.txt"
    ids.write_text("M-2\n\nM-3\n")
    out = StringIO()

    call_command("erase_members", "M-1", "--file", str(ids), "--by", "ticket-42", stdout=out)

    assert "Erased 3 member(s)." in out.getvalue()
    assert not Member.objects.filter(member_id__in=["M-1", "M-2", "M-3"]).exists()
    assert set(ErasureRecord.objects.values_list("erased_by", "source")) == {("ticket-42", "shell")}

    err = StringIO()
    with pytest.raises(CommandError, match="1 not found: nobody"):
        call_command("erase_members", "nobody", stdout=StringIO(), stderr=err)
    assert "nobody: No member" in err.getvalue()


def test_the_command_names_a_directory_or_a_file_that_is_not_utf8_and_erases_nobody(ada, tmp_path):
    with pytest.raises(CommandError, match=r"is a directory; give a file"):
        call_command("erase_members", "--file", str(tmp_path), stdout=StringIO())
    latin1 = tmp_path / "ids.txt"
    latin1.write_bytes(b"M-1\nM-\xe9t\xe9\n")
    with pytest.raises(CommandError, match=r"line 2 is not UTF-8 text.*Nobody was erased"):
        call_command("erase_members", "--file", str(latin1), stdout=StringIO())

    assert Member.objects.filter(member_id="M-1").exists()
