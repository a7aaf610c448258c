"""The member page's custom fields editor: one input per defined custom field, following its type.

django-jsonform (its React editor and static files ship with the package: nothing is loaded from a CDN)
draws the inputs from a schema built here from the ``CustomField`` rows: a date picker for dates, a
checkbox for booleans, number inputs, lists and key/value editors for arrays and objects. It only
edits: the values are checked by the services (``services.member_profile_check``), which name the field.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django_jsonform.forms.fields import JSONFormField

from .fieldtypes import FieldType
from .models import CustomField

# How each type is edited (django-jsonform's schema keywords).
_FREE_OBJECT = {"type": "object", "keys": {}, "additionalProperties": {"type": "string"}}
_EDITORS: dict[str, dict[str, Any]] = {
    FieldType.STRING: {"type": "string"},
    FieldType.INTEGER: {"type": "integer"},
    FieldType.FLOAT: {"type": "number"},
    FieldType.BOOLEAN: {"type": "boolean"},
    FieldType.DATE: {"type": "string", "format": "date"},
    FieldType.DATETIME: {"type": "string", "format": "date-time"},
    FieldType.ARRAY: {"type": "array", "items": {"type": "string"}},
    FieldType.OBJECT: _FREE_OBJECT,
    FieldType.ARRAY_OF_OBJECTS: {"type": "array", "items": _FREE_OBJECT},
}


def custom_fields_schema(definitions: list[CustomField] | None = None) -> dict[str, Any]:
    """The editor's schema: an object with one key per custom field, titled with its label."""
    if definitions is None:
        definitions = list(CustomField.objects.order_by("key"))
    keys = {}
    for definition in definitions:
        editor = dict(_EDITORS.get(definition.type, {"type": "string"}))
        editor["title"] = f"{definition.label} ({definition.key})"
        if definition.help_text:
            editor["help_text"] = definition.help_text
        keys[definition.key] = editor
    return {"type": "object", "keys": keys}


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def custom_fields_submitted(submitted: Any, stored: dict[str, Any], known: set[str]) -> Any:
    """The values to check and save from what the editor sent.

    The editor sends every defined field: an input left empty (or a checkbox left unticked) for a field
    the member has no value for sets nothing; emptied for a field that had one, it clears it (``None``).
    Stored values of keys that are no longer defined are kept as they are: the editor does not show them.
    """
    if not isinstance(submitted, dict):
        return submitted  # the services name the problem
    values: dict[str, Any] = {}
    for key, value in submitted.items():
        if key in stored:
            values[key] = None if _empty(value) else value
        elif not (_empty(value) or value is False):
            values[key] = value
    values.update({key: value for key, value in stored.items() if key not in known and key not in values})
    return values


class CustomFieldsFormField(JSONFormField):
    """The editor; JSON parsing only, the services validate the values."""

    def __init__(self, **kwargs):
        kwargs.setdefault("schema", lambda: custom_fields_schema())
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def validate(self, value):
        # django-jsonform would check the schema itself: the services' rules (with their messages naming
        # the field) are the only ones, so only Django's JSON field checks run here.
        forms.JSONField.validate(self, value)

    def run_validators(self, value):
        forms.JSONField.run_validators(self, value)

    def show_problem(self, key: str, problem: str) -> None:
        """Mark ``key``'s input in the editor with the services' problem."""
        self.widget.add_error({key: [problem]})
