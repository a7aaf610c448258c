"""A custom field that a Braze mapping sends is protected from deletion: in the admin (shown as protected,
single and bulk delete) and anywhere else (``delete()`` raises)."""

from __future__ import annotations

import pytest
from django.db.models import ProtectedError

from braze_integration.models import FieldMapping
from loyaltysync.models import CustomField


def test_a_custom_field_a_mapping_sends_cannot_be_deleted_until_the_mapping_is_gone(braze_connection, admin_client):
    """Deleting it left the mapping sending nothing, silently, and an export its own import refuses."""
    field = CustomField.objects.create(key="shoe_size", label="Shoe size", type="integer")
    mapping = FieldMapping.objects.create(connection=braze_connection, loyalty_field="custom.shoe_size",
                                          remote_field="loyalty_shoe_size", position=40)
    url = f"/admin/loyaltysync/customfield/{field.pk}/delete/"

    page = admin_client.get(url).content.decode()
    assert "custom.shoe_size → loyalty_shoe_size" in page
    admin_client.post(url, {"post": "yes"})
    admin_client.post("/admin/loyaltysync/customfield/", {"action": "delete_selected", "_selected_action": [field.pk],
                                                          "post": "yes"})
    assert CustomField.objects.filter(pk=field.pk).exists()
    with pytest.raises(ProtectedError, match="custom.shoe_size → loyalty_shoe_size"):
        field.delete()

    mapping.delete()
    admin_client.post(url, {"post": "yes"})
    assert not CustomField.objects.filter(pk=field.pk).exists()
