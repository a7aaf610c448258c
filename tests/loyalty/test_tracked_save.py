"""What a plain ``member.save()`` writes: the fields changed since the object was loaded, however it was
loaded (``only()``, ``defer()``, ``refresh_from_db()``), and nothing it did not change."""

from __future__ import annotations

import pytest
from django.db import DatabaseError

from loyaltysync.models import Member
from tests.rollbacks import rolled_back

pytestmark = pytest.mark.django_db


@pytest.fixture
def stored():
    return Member.objects.create(member_id="m-1", first_name="Ada", points_spendable=1)


def test_given_a_member_loaded_without_a_field_when_the_field_is_set_then_it_is_written_and_counts_as_changed(
        stored):
    member = Member.objects.only("first_name").get(pk=stored.pk)

    member.points_spendable = 7
    assert "points_spendable" in member.changed_fields()
    member.save()

    assert Member.objects.get(pk=stored.pk).points_spendable == 7


def test_given_a_deferred_field_read_then_changed_then_the_change_is_written(stored):
    member = Member.objects.defer("points_spendable").get(pk=stored.pk)
    assert member.points_spendable == 1  # read on access

    member.points_spendable = 8
    member.save()

    assert Member.objects.get(pk=stored.pk).points_spendable == 8


def test_given_a_field_still_deferred_then_a_save_leaves_it_alone(stored):
    member = Member.objects.only("first_name").get(pk=stored.pk)
    Member.objects.filter(pk=stored.pk).update(points_spendable=9)

    member.first_name = "Grace"
    member.save()

    assert Member.objects.values_list("first_name", "points_spendable").get(pk=stored.pk) == ("Grace", 9)


def test_given_a_refreshed_member_then_nothing_counts_as_changed_and_a_save_writes_no_old_value(stored):
    member = Member.objects.get(pk=stored.pk)
    Member.objects.filter(pk=stored.pk).update(first_name="Grace")

    member.refresh_from_db()
    assert member.changed_fields() == set()
    Member.objects.filter(pk=stored.pk).update(first_name="Linus")
    member.phone = "+49 30 1234"
    member.save()

    assert Member.objects.values_list("first_name", "phone").get(pk=stored.pk) == ("Linus", "+49 30 1234")


def test_given_a_save_without_changes_then_the_row_is_touched_and_nothing_else_is_written(stored):
    member = Member.objects.get(pk=stored.pk)
    Member.objects.filter(pk=stored.pk).update(first_name="Grace")
    before = Member.objects.get(pk=stored.pk).updated_at

    member.save()

    after = Member.objects.get(pk=stored.pk)
    assert after.first_name == "Grace"
    assert after.updated_at > before


def test_given_a_refreshed_member_when_a_field_is_set_back_to_its_earlier_value_then_it_is_written(stored):
    member = Member.objects.get(pk=stored.pk)
    Member.objects.filter(pk=stored.pk).update(first_name="Grace")
    member.refresh_from_db()

    member.first_name = "Ada"
    member.save()

    assert Member.objects.get(pk=stored.pk).first_name == "Ada"


def test_given_a_json_value_that_python_takes_for_equal_when_it_changes_then_it_is_written(stored):
    Member.objects.filter(pk=stored.pk).update(custom_fields={"prefs": {"vip": True, "n": 0}})
    member = Member.objects.get(pk=stored.pk)

    member.custom_fields = {"prefs": {"vip": 1, "n": False}}
    assert {"custom_fields", "custom_fields.prefs"} <= member.changed_fields()
    member.save()

    assert Member.objects.get(pk=stored.pk).custom_fields == {"prefs": {"vip": 1, "n": False}}
    assert Member.objects.get(pk=stored.pk).custom_fields["prefs"]["vip"] is not True


def test_given_a_rolled_back_save_when_another_writer_changes_a_field_then_the_retry_writes_only_its_own(stored):
    member = Member.objects.get(pk=stored.pk)
    with rolled_back():
        member.first_name = "Grace"
        member.save()
    Member.objects.filter(pk=stored.pk).update(email="new@example.com", points_spendable=50)

    member.save()  # the retry

    assert Member.objects.values_list("first_name", "email", "points_spendable").get(pk=stored.pk) == (
        "Grace", "new@example.com", 50)


def test_given_a_rolled_back_save_when_the_member_is_erased_then_the_retry_raises_and_does_not_bring_it_back(
        stored, loyalty_settings):
    from loyaltysync.services.erasure import member_erase

    member = Member.objects.get(pk=stored.pk)
    with rolled_back():
        member.first_name = "Grace"
        member.save()
    member_erase(member_id="m-1", erased_by="test", source="admin")

    with pytest.raises(DatabaseError):
        member.save()

    assert not Member.objects.filter(pk=stored.pk).exists()


def test_given_a_rolled_back_creation_when_it_is_saved_again_then_the_member_is_inserted(db):
    with rolled_back():
        member = Member.objects.create(member_id="m-2", first_name="Ada")
        member.first_name = "Grace"
        member.save()

    member.save()

    assert Member.objects.values_list("member_id", "first_name").get() == ("m-2", "Grace")


def test_given_a_stale_object_when_it_changes_one_key_of_a_json_object_then_other_writers_keys_stay(stored):
    Member.objects.filter(pk=stored.pk).update(custom_fields={"shoe_size": 40, "favourite_store": "Mitte"})
    member = Member.objects.get(pk=stored.pk)
    Member.objects.filter(pk=stored.pk).update(custom_fields={"shoe_size": 40, "favourite_store": "Kreuzberg",
                                                              "newsletter": True})

    member.custom_fields["shoe_size"] = 42
    del member.custom_fields["favourite_store"]
    assert member.changed_fields() & {"custom_fields.shoe_size", "custom_fields.favourite_store"} == {
        "custom_fields.shoe_size", "custom_fields.favourite_store"}
    member.save()

    assert Member.objects.get(pk=stored.pk).custom_fields == {"shoe_size": 42, "newsletter": True}
    assert member.custom_fields == {"shoe_size": 42, "newsletter": True}


def test_given_a_merged_json_object_then_listeners_see_only_this_saves_keys_changed(stored):
    from django.db.models.signals import post_save

    Member.objects.filter(pk=stored.pk).update(custom_fields={"shoe_size": 40})
    member = Member.objects.get(pk=stored.pk)
    Member.objects.filter(pk=stored.pk).update(custom_fields={"shoe_size": 40, "newsletter": True})
    seen = []

    def listener(sender, instance, **kwargs):
        seen.append(instance.changed_fields())

    post_save.connect(listener, sender=Member, dispatch_uid="test-merged-json")
    try:
        member.custom_fields = {"shoe_size": 42}
        member.save()
    finally:
        post_save.disconnect(dispatch_uid="test-merged-json", sender=Member)

    assert seen == [{"custom_fields", "custom_fields.shoe_size", "updated_at"}]


def test_given_fields_named_then_changed_fields_looks_at_those_only(stored):
    """What a ``post_save`` receiver asks about the fields the save wrote (its ``update_fields``)."""
    m = Member.objects.get(pk=stored.pk)
    m.first_name, m.points_spendable, m.custom_fields = "Grace", 2, {"vip": True}
    assert m.changed_fields(among=["first_name", "updated_at"]) == {"first_name"}
    assert m.changed_fields(among=["custom_fields"]) == {"custom_fields", "custom_fields.vip"}
    assert m.changed_fields() == {"first_name", "points_spendable", "custom_fields", "custom_fields.vip"}
