"""Field-change triggers and ``member.save()``: a trigger fires once for what the save changed, not for a
value given in another type, a field a stale object did not touch, or a retried save."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import transaction

from loyaltysync import services as loyalty
from loyaltysync.models import CustomField, FieldType, Member
from tests.workflows.factories import make_workflow
from workflows.models import TriggerKind, TriggerRecord


def on_change(field, **kw):
    return make_workflow(name=f"On {field}", trigger_kind=TriggerKind.FIELD_CHANGE, trigger_field=field, **kw)


@pytest.fixture
def member(transactional_db, loyalty_settings, tiers) -> Member:
    m, _ = loyalty.event_record(member_id="M-1", action="opt_in", data={"first_name": "Ada"}, source="api")
    Member.objects.filter(pk=m.pk).update(birth_date=dt.date(1990, 5, 17), purchase_total=Decimal("10.00"))
    return Member.objects.get(pk=m.pk)


def test_given_the_same_date_set_as_text_then_no_trigger_fires(member):
    on_change("birth_date")
    member.birth_date = "1990-05-17"
    member.save()
    assert Member.objects.get(pk=member.pk).birth_date == dt.date(1990, 5, 17)
    assert list(TriggerRecord.objects.values_list("changes", flat=True)) == []


def test_given_the_same_amount_set_as_text_then_no_trigger_fires(member):
    on_change("purchase_total")
    member.purchase_total = "10.00"
    member.save()
    assert list(TriggerRecord.objects.values_list("changes", flat=True)) == []


def test_given_a_field_left_out_of_a_save_when_saved_plainly_then_its_trigger_fires_once(member):
    on_change("first_name")
    member.first_name = "Grace"
    member.phone = "+49 30 1"
    member.save(update_fields=["phone"])
    member.save()
    assert TriggerRecord.objects.count() == 1


def test_given_another_writers_custom_field_change_then_a_stale_objects_save_does_not_fire_it_again(member):
    CustomField.objects.create(key="a", label="A", type=FieldType.INTEGER)
    CustomField.objects.create(key="b", label="B", type=FieldType.INTEGER)
    Member.objects.filter(pk=member.pk).update(custom_fields={"a": 1, "b": 1})
    m = Member.objects.get(pk=member.pk)
    on_change("custom_fields.b")
    Member.objects.filter(pk=m.pk).update(custom_fields={"a": 1, "b": 2})  # other writer (already triggered elsewhere)
    m.custom_fields["a"] = 5
    m.save()
    assert TriggerRecord.objects.count() == 0


def test_given_a_custom_field_saved_in_a_rolled_back_savepoint_then_the_retry_fires_once(member):
    CustomField.objects.create(key="a", label="A", type=FieldType.INTEGER)
    on_change("custom_fields.a")
    m = Member.objects.get(pk=member.pk)
    with transaction.atomic():
        m.custom_fields = {"a": 1}
        try:
            with transaction.atomic():
                m.save()
                raise RuntimeError
        except RuntimeError:
            pass
        m.save()
    assert TriggerRecord.objects.count() == 1
