"""Sync fields: rows of loyalty field → Braze attribute; after a change, a resync offered with dry-run figures."""

from __future__ import annotations

import pytest
from django.urls import reverse

from braze_integration.fields import loyalty_fields
from braze_integration.models import FieldMapping, ResyncRun, ResyncStatus
from loyaltysync.models import Member

from .conftest import connection_form

pytestmark = pytest.mark.usefixtures("q_sync")


def change_url(connection):
    return reverse("admin:braze_integration_connection_change", args=[connection.pk])


def test_the_loyalty_field_dropdown_is_grouped_and_shows_the_braze_type(admin_client, braze_connection):
    page = admin_client.get(change_url(braze_connection)).content.decode()

    assert '<optgroup label="Points">' in page and '<optgroup label="Computed">' in page
    assert ">Points spendable (integer)</option>" in page
    assert ">Last purchase items (array of objects)</option>" in page
    assert "Add new field" in page and "Braze data point" in page
    assert 'name="mappings-0-DELETE"' in page  # a remove control per saved row


def test_given_a_new_mapping_when_saved_then_a_resync_is_offered_with_dry_run_figures(
    admin_client, braze_connection, sandbox
):
    for index in range(3):
        Member.objects.create(member_id=f"m-{index}", first_name="Ada", points_pending=10 * index)

    response = admin_client.post(
        change_url(braze_connection),
        connection_form(braze_connection, mappings=[("points_pending", "loyalty_points_pending")]),
    )

    assert response.status_code == 302
    assert response.url == reverse("admin:braze_integration_resync") + "?fields=loyalty_points_pending"
    offer = admin_client.get(response.url)
    assert offer.status_code == 200
    report = offer.context["report"]
    assert (report.members, report.would_send, report.unchanged, report.requests) == (3, 3, 0, 1)
    page = offer.content.decode()
    assert 'id="dry-run-would-send">3<' in page and "Start the resync (3 members)" in page
    assert '"loyalty_points_pending": 0' in offer.context["sample"]  # the first member's payload
    assert "&quot;loyalty_points_pending&quot;: 0" in page
    assert all("loyalty_points_pending" not in sandbox.user(f"m-{i}")["attributes"] for i in range(3))


def test_given_the_offer_when_confirmed_then_the_resync_runs_in_the_background_and_shows_its_progress(
    admin_client, braze_connection, sandbox
):
    for index in range(3):
        Member.objects.create(member_id=f"m-{index}", points_pending=10 * index)
    FieldMapping.objects.create(
        connection=braze_connection,
        loyalty_field="points_pending",
        remote_field="loyalty_points_pending",
        position=50,
    )

    response = admin_client.post(
        reverse("admin:braze_integration_resync"), {"fields": "loyalty_points_pending"}, follow=True
    )

    run = ResyncRun.objects.get()
    assert response.redirect_chain[-1][0] == reverse(
        "admin:braze_integration_resyncrun_change", args=[run.pk]
    )
    assert run.status == ResyncStatus.FINISHED  # q_sync: the task ran inline
    assert (run.total, run.members_sent) == (3, 3)
    assert run.options["selection"]["fields"] == ["loyalty_points_pending"]
    assert [sandbox.user(f"m-{i}")["attributes"]["loyalty_points_pending"] for i in range(3)] == [0, 10, 20]
    page = admin_client.get(
        reverse("admin:braze_integration_resyncrun_change", args=[run.pk])
    ).content.decode()
    assert "3/3 (100%)" in page and 'name="_save"' not in page


def test_given_only_unchanged_rows_when_saved_then_no_resync_is_offered(admin_client, braze_connection):
    Member.objects.create(member_id="m-1")

    response = admin_client.post(change_url(braze_connection), connection_form(braze_connection))

    assert response.status_code == 302 and response.url == reverse(
        "admin:braze_integration_connection_changelist"
    )


def test_given_a_standard_profile_field_as_remote_field_then_a_warning_is_shown(
    admin_client, braze_connection
):
    response = admin_client.post(
        change_url(braze_connection),
        connection_form(braze_connection, mappings=[("email", "email")]),
        follow=True,
    )

    messages = [str(m) for m in response.context["messages"]]
    assert any("“email” is one of Braze's standard profile fields" in m for m in messages), messages
    page = admin_client.get(change_url(braze_connection)).content.decode()
    assert "is a Braze standard profile field" in page


def test_bad_rows_are_refused_next_to_the_field(admin_client, braze_connection):
    response = admin_client.post(
        change_url(braze_connection),
        connection_form(
            braze_connection, mappings=[("tier", "$bad"), ("tier", "loyalty_points"), ("nonsense", "x")]
        ),
    )

    assert response.status_code == 200
    formset = response.context["inline_admin_formsets"][0].formset
    errors = [form.errors for form in formset.forms if form.errors]
    text = str(errors) + str(formset.non_form_errors())
    assert "must not start with" in text
    assert "Select a valid choice" in text
    assert "duplicate data for remote_field" in text  # loyalty_points is mapped already
    assert FieldMapping.objects.count() == 9


def test_removing_a_row_deletes_the_mapping(admin_client, braze_connection):
    data = connection_form(braze_connection)
    data["mappings-0-DELETE"] = "on"

    assert admin_client.post(change_url(braze_connection), data).status_code == 302
    assert FieldMapping.objects.count() == 8


def test_every_loyalty_field_can_be_chosen(admin_client, braze_connection):
    page = admin_client.get(change_url(braze_connection)).content.decode()
    assert all(f'value="{key}"' in page for key in loyalty_fields())
