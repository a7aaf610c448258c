"""`braze_fields`: the loyalty fields a mapping can name, with their Braze types."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command

from loyaltysync.models import CustomField, FieldType

pytestmark = pytest.mark.django_db


def braze_fields(*args: str) -> str:
    out = StringIO()
    call_command("braze_fields", *args, stdout=out)
    return out.getvalue()


def test_given_custom_fields_when_listed_as_json_then_they_come_with_their_braze_types():
    CustomField.objects.create(key="shoe_size", label="Shoe size", type=FieldType.INTEGER)
    CustomField.objects.create(key="joined", label="Joined", type=FieldType.DATETIME)
    CustomField.objects.create(key="prefs", label="Preferences", type=FieldType.ARRAY_OF_OBJECTS)

    rows = json.loads(braze_fields("--json"))

    by_field = {row["field"]: row for row in rows}
    assert by_field["custom.shoe_size"] == {"field": "custom.shoe_size", "type": "integer", "label": "Shoe size"}
    assert by_field["custom.joined"]["type"] == "date"  # Braze has no separate datetime type
    assert by_field["custom.prefs"]["type"] == "array_of_objects"
    assert by_field["points_spendable"]["type"] == "integer"
    assert {row["type"] for row in rows} == {"integer", "float", "string", "boolean", "date", "array", "object",
                                             "array_of_objects"}
    assert all(set(row) == {"field", "type", "label"} for row in rows)


def test_the_plain_listing_has_one_field_a_line_with_its_type():
    CustomField.objects.create(key="vip", label="VIP", type=FieldType.BOOLEAN)

    lines = braze_fields().splitlines()

    assert len(lines) == len(json.loads(braze_fields("--json")))
    assert lines[-1].split() == ["custom.vip", "boolean", "VIP"]
    assert any(line.split()[:2] == ["last_purchase_items", "array_of_objects"] for line in lines)
