"""A plain ``member.save()`` against the ways a Django developer holds, copies, retries and half-saves member
objects: what the user set is written and reaches the sandbox, and nothing else is written."""
from __future__ import annotations

import copy
import datetime as dt
import pickle
from decimal import Decimal

import pytest
from django.db import DatabaseError, transaction

from loyaltysync.models import Member, Tier
from tests.rollbacks import rolled_back

from .members import make_member

pytestmark = pytest.mark.usefixtures("q_sync")


def row(pk, *f):
    return Member.objects.values_list(*f).get(pk=pk)


def test_given_a_save_of_some_fields_when_the_member_is_saved_plainly_then_the_rest_is_written_and_sent(braze_connection, sandbox):
    m = make_member()
    m.first_name = "Grace"          # mapped
    m.phone = "+49 30 1"
    m.save(update_fields=["phone"])
    m.save()                         # Django's plain save would write first_name
    assert row(m.pk, "first_name") == ("Grace",)
    assert sandbox.user("m-1")["attributes"]["loyalty_first_name"] == "Grace"


def test_given_a_tier_assigned_before_it_was_saved_when_the_member_is_saved_then_the_tier_is_written_and_sent(braze_connection, sandbox):
    m = Member.objects.get(pk=make_member().pk)
    t = Tier(name="Gold", points_threshold=0)
    m.tier = t
    t.save()
    m.save()
    assert m.tier_id == t.pk
    assert row(m.pk, "tier_id") == (t.pk,)
    assert sandbox.user("m-1")["attributes"].get("loyalty_tier") == "Gold"


def test_given_a_rolled_back_save_of_a_json_key_when_another_writer_sets_another_key_then_the_retry_keeps_it(braze_connection, sandbox):
    m = make_member(custom_fields={"a": 1, "b": 1})
    m = Member.objects.get(pk=m.pk)
    m.custom_fields["a"] = 2
    with rolled_back():
        m.save()
    Member.objects.filter(pk=m.pk).update(custom_fields={"a": 1, "b": 99})  # other writer
    m.save()  # retry
    assert row(m.pk, "custom_fields") == ({"a": 2, "b": 99},)


def test_given_a_json_key_saved_in_a_rolled_back_savepoint_then_the_retry_keeps_another_writers_key(braze_connection, sandbox):
    m = Member.objects.get(pk=make_member(custom_fields={"a": 1, "b": 1}).pk)
    with transaction.atomic():
        m.custom_fields["a"] = 2
        try:
            with transaction.atomic():
                m.save()
                raise RuntimeError
        except RuntimeError:
            pass
        Member.objects.filter(pk=m.pk).update(custom_fields={"a": 1, "b": 99})
        m.save()
    assert row(m.pk, "custom_fields") == ({"a": 2, "b": 99},)


def test_given_a_rolled_back_save_and_a_refresh_then_a_later_save_leaves_another_writers_value(braze_connection, sandbox):
    m = Member.objects.get(pk=make_member().pk)
    with rolled_back():
        m.first_name = "B"
        m.save()
    Member.objects.filter(pk=m.pk).update(first_name="C")
    m.refresh_from_db()
    assert m.first_name == "C"
    Member.objects.filter(pk=m.pk).update(first_name="D")
    m.phone = "+49 30 1"
    m.save()
    assert row(m.pk, "first_name", "phone") == ("D", "+49 30 1")


def test_given_a_rolled_back_save_and_a_refresh_when_the_field_is_set_back_then_it_is_written(braze_connection, sandbox):
    m = Member.objects.get(pk=make_member().pk)  # first_name "Ada"
    with rolled_back():
        m.first_name = "B"
        m.save()
    Member.objects.filter(pk=m.pk).update(first_name="C")
    m.refresh_from_db()
    m.first_name = "Ada"
    m.save()
    assert row(m.pk, "first_name") == ("Ada",)


def test_given_a_copy_refreshed_then_the_original_still_writes_only_its_own_changes(braze_connection, sandbox):
    m = Member.objects.get(pk=make_member().pk)
    Member.objects.filter(pk=m.pk).update(first_name="Other")
    c = copy.copy(m)
    c.refresh_from_db()
    m.phone = "+49 30 1"
    m.save()
    assert row(m.pk, "first_name") == ("Other",)


def test_given_a_member_pickled_after_a_save_that_rolls_back_then_its_save_writes_the_value(braze_connection, sandbox):
    m = Member.objects.get(pk=make_member().pk)
    with rolled_back():
        m.first_name = "Pickled"
        m.save()
        blob = pickle.dumps(m)
    p = pickle.loads(blob)
    p.save()
    assert row(m.pk, "first_name") == ("Pickled",)


def test_given_a_member_copied_after_a_save_that_rolls_back_then_its_save_writes_the_value(braze_connection, sandbox):
    m = Member.objects.get(pk=make_member().pk)
    with rolled_back():
        m.first_name = "Copied"
        m.save()
        d = copy.deepcopy(m)
    d.save()
    assert row(m.pk, "first_name") == ("Copied",)


def test_given_a_date_set_as_text_then_it_is_written_and_sent(braze_connection, sandbox):
    m = Member.objects.get(pk=make_member().pk)
    m.birth_date = "1991-01-02"
    m.save()
    assert row(m.pk, "birth_date") == (dt.date(1991, 1, 2),)
    assert sandbox.user("m-1")["attributes"]["loyalty_birthday"] == "1991-01-02"


def test_given_an_amount_set_as_a_float_then_it_is_written_and_sent(braze_connection, sandbox):
    m = Member.objects.get(pk=make_member().pk)
    m.purchase_total = 12.5
    m.save()
    assert row(m.pk, "purchase_total") == (Decimal("12.50"),)
    assert sandbox.user("m-1")["attributes"]["loyalty_purchase_total"] == 12.5


def test_given_json_fields_set_to_none_lists_and_objects_in_turn_then_each_is_written(braze_connection, sandbox):
    m = Member.objects.get(pk=make_member(last_purchase=None).pk)
    m.last_purchase = {"transaction_id": "t9", "total": 5, "currency": "EUR",
                       "items": [{"product_id": "sku-9", "price": 5, "quantity": 1}]}
    m.save()
    assert sandbox.user("m-1")["attributes"]["loyalty_last_products"] == ["sku-9"]
    m.last_purchase = None
    m.save()
    assert row(m.pk, "last_purchase") == (None,)
    m.custom_fields = ["x"]
    m.save()
    assert row(m.pk, "custom_fields") == (["x"],)
    m.custom_fields = {"k": 1}
    m.save()
    assert row(m.pk, "custom_fields") == ({"k": 1},)


def test_given_a_creation_rolled_back_with_its_savepoint_when_saved_again_then_it_is_inserted_and_sent(braze_connection, sandbox):
    m = Member(member_id="m-9", first_name="New")
    with transaction.atomic():
        try:
            with transaction.atomic():
                m.save()
                raise RuntimeError
        except RuntimeError:
            pass
        m.save()
    assert row(m.pk, "first_name") == ("New",)
    assert sandbox.user("m-9") is not None


def test_given_a_rolled_back_save_when_the_member_is_deleted_then_the_retry_raises(braze_connection, sandbox):
    m = Member.objects.get(pk=make_member().pk)
    with rolled_back():
        m.first_name = "X"
        m.save()
    Member.objects.filter(pk=m.pk).delete()
    with pytest.raises(DatabaseError):
        m.save()
    assert not Member.objects.filter(pk=m.pk).exists()


def test_given_a_creation_and_an_update_rolled_back_when_saved_again_then_the_newest_value_is_inserted(braze_connection, sandbox):
    m = Member(member_id="m-10", first_name="New")
    with rolled_back():
        m.save()
        with transaction.atomic():
            m.first_name = "Newer"
            m.save()
    m.save()
    assert row(m.pk, "first_name") == ("Newer",)
    assert sandbox.user("m-10")["attributes"]["loyalty_first_name"] == "Newer"


def test_given_a_mapped_custom_field_changed_in_memory_when_another_field_alone_is_saved_then_nothing_is_sent(braze_connection, sandbox):
    """The receiver asks only about the fields the save wrote: a key of a JSON field left unsaved is no
    change of the stored member."""
    from braze_integration.models import FieldMapping, SyncRequest
    from loyaltysync.models import CustomField

    CustomField.objects.create(key="shoe_size", label="Shoe size", type="integer")
    FieldMapping.objects.create(connection=braze_connection, loyalty_field="custom.shoe_size",
                                remote_field="loyalty_shoe_size", position=40)
    m = Member.objects.get(pk=make_member().pk)
    requests = SyncRequest.objects.count()
    m.phone = "+49 30 1"  # not mapped
    m.custom_fields["shoe_size"] = 44  # mapped, not written below
    m.save(update_fields=["phone"])
    assert SyncRequest.objects.count() == requests
    m.save(update_fields=["custom_fields"])
    assert SyncRequest.objects.count() == requests + 1
    assert sandbox.user("m-1")["attributes"]["loyalty_shoe_size"] == 44
