"""A sync-data action writing a Braze standard attribute: the type its rule takes, Braze's format for
the value (as a mapping's), and subscription groups left to the mappings of consent fields."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from workflows.models import ActionValue
from workflows.plan import ActionPlan
from workflows.values import ValueSpec

from .test_mapped_attributes import sync_data_action


def test_a_sync_data_action_sends_standard_attributes_in_brazes_format():
    specs = (ValueSpec(name="gender", braze_type="string", source="constant", constant="female"),
             ValueSpec(name="country", braze_type="string", source="constant", constant="no"),
             ValueSpec(name="dob", braze_type="date", source="member", path="birth_date"),
             ValueSpec(name="email_subscribe", braze_type="string", source="member", path="consent_email"))
    plan = ActionPlan(id=1, kind="sync_data", specs=specs, label="action 1")

    [intent] = plan.intents({"member": {"birth_date": "1990-05-17", "consent_email": ""}}, "m-1")

    # An unset consent is left out, as a mapping leaves it out.
    assert intent.payload["attributes"] == {"gender": "F", "country": "NO", "dob": "1990-05-17"}


@pytest.mark.django_db
def test_a_workflow_may_not_send_subscription_groups():
    value = ActionValue(action=sync_data_action(), name="subscription_groups", braze_type="array_of_objects",
                        source="constant", constant='[{"subscription_group_id": "g", "subscription_state": "x"}]')

    with pytest.raises(ValidationError) as caught:
        value.full_clean()

    assert caught.value.message_dict["name"] == [
        '"subscription_groups" is written by subscription group mappings: map a consent field with the kind '
        '"subscription group" and the group\'s id; a workflow cannot send it.']


@pytest.mark.django_db
def test_a_workflow_may_not_send_push_tokens():
    value = ActionValue(action=sync_data_action(), name="push_tokens", braze_type="array_of_objects",
                        source="constant", constant='[{"app_id": "a", "token": "t"}]')

    with pytest.raises(ValidationError) as caught:
        value.full_clean()

    assert caught.value.message_dict["name"] == [
        "\"push_tokens\" holds the devices' push tokens, which the apps register through Braze's SDK; a workflow "
        "cannot send it."]
