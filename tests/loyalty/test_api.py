"""The REST API: authentication, members, events, bulk events, the error shape and the schema."""

from __future__ import annotations

import json

import pytest
import yaml

from loyaltysync.models import LoyaltyEvent, Member

pytestmark = pytest.mark.django_db

EVENTS = "/api/v1/events"


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "fields", "details"}, body
    # Each problem of `fields` is in `details` with a code, in the same order.
    details = body["error"]["details"]
    assert [(d["field"], d["message"]) for d in details] == [
        (path, problem) for path, problems in body["error"]["fields"].items() for problem in problems
    ], body
    assert all(isinstance(d["code"], str) and d["code"] for d in details), body
    return body["error"]


def checkout_body(customer="M-1", transaction_id="T-1", total=100, **data):
    return {
        "customer": customer,
        "action": "checkout",
        "data": {"transaction_id": transaction_id, "total": total, "currency": "EUR", **data},
    }


# --- authentication -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/api/v1/members/"),
        ("post", "/api/v1/members/"),
        ("get", "/api/v1/members/M-1/"),
        ("patch", "/api/v1/members/M-1/"),
        ("get", "/api/v1/members/M-1/events/"),
        ("post", EVENTS),
        ("post", EVENTS + "/bulk"),
    ],
)
def test_every_endpoint_needs_a_token(anonymous_api, enrol, method, url):
    """Given no credentials, when any endpoint is called, then the answer is 401 asking for a token."""
    enrol("M-1")
    response = getattr(anonymous_api, method)(url, {}, format="json")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert error_of(response)["code"] == "not_authenticated"


def test_a_wrong_token_is_refused(anonymous_api, db):
    """Given an unknown token, when the API is called, then the answer is 401."""
    anonymous_api.credentials(HTTP_AUTHORIZATION="Token not-a-real-key")
    response = anonymous_api.get("/api/v1/members/")
    assert response.status_code == 401
    assert error_of(response)["code"] == "authentication_failed"


# --- members ------------------------------------------------------------------------------------------


def test_create_then_get_a_member(api, tiers, loyalty_settings, custom_fields):
    """Given tiers and custom fields, when a member is created, then it can be read back with its values
    and entry tier.
    """
    response = api.post(
        "/api/v1/members/",
        {
            "member_id": "M-7",
            "first_name": "Grace",
            "email": "grace@example.com",
            "custom_fields": {"shoe_size": 40},
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["tier"] == "Bronze"

    member = api.get("/api/v1/members/M-7/").json()
    assert (member["first_name"], member["custom_fields"], member["points_spendable"]) == (
        "Grace",
        {"shoe_size": 40},
        0,
    )


def test_creating_an_existing_member_is_a_conflict(api, enrol):
    """Given a member, when it is created again, then the answer is 409 naming member_id."""
    enrol("M-1")
    response = api.post("/api/v1/members/", {"member_id": "M-1"}, format="json")
    assert response.status_code == 409
    assert error_of(response)["fields"] == {"member_id": ["A member with id 'M-1' exists already."]}


def test_list_filters_and_searches(api, enrol, record):
    """Given members in different states, when the list is filtered or searched, then only the matching
    ones come back.
    """
    enrol("M-1", first_name="Ada")
    enrol("M-2", first_name="Grace")
    record("M-2", "point_add", points=600)
    record("M-1", "opt_out")

    def ids(query):
        response = api.get("/api/v1/members/", query)
        assert response.status_code == 200
        return [member["member_id"] for member in response.json()["results"]]

    assert ids({}) == ["M-1", "M-2"]
    assert ids({"status": "opted_out"}) == ["M-1"]
    assert ids({"tier": "silver"}) == ["M-2"]
    assert ids({"search": "grac"}) == ["M-2"]
    # Cursor pagination has no count: every member is on the one page, and there is no next one.
    page = api.get("/api/v1/members/").json()
    assert (len(page["results"]), page["next"]) == (2, None)


def test_list_with_a_bad_filter_names_it(api, db):
    """Given an unknown status, when the list is filtered by it, then the answer is 400 naming status."""
    response = api.get("/api/v1/members/", {"status": "sleeping"})
    assert response.status_code == 400
    assert list(error_of(response)["fields"]) == ["status"]


def test_unknown_member_is_404(api, db):
    """Given no member 'ghost', when it is read, then the answer is 404 member_not_found."""
    for url in ("/api/v1/members/ghost/", "/api/v1/members/ghost/events/"):
        response = api.get(url)
        assert response.status_code == 404
        assert error_of(response)["code"] == "member_not_found"


def test_member_ids_with_a_slash_can_be_addressed(api, enrol):
    """Given a member id with a slash, when it is read, then the member and its events are found."""
    enrol("shop/42")
    assert api.get("/api/v1/members/shop/42/").json()["member_id"] == "shop/42"
    # opt_in (joining the entry tier records no tier_reached)
    assert len(api.get("/api/v1/members/shop/42/events/").json()["results"]) == 1


@pytest.mark.parametrize(
    ("member_id", "problem"),
    [
        ("..", "Must not consist of dots only ('.' and '..' cannot be used in URLs)."),
        (".", "Must not consist of dots only ('.' and '..' cannot be used in URLs)."),
        ("M-\u202e1", "Must not contain invisible formatting characters (found U+202E RIGHT-TO-LEFT OVERRIDE)."),
        ("M-\u200b1", "Must not contain invisible formatting characters (found U+200B ZERO WIDTH SPACE)."),
    ],
)
def test_member_ids_of_dots_only_or_with_formatting_characters_are_refused(api, enrol, member_id, problem):
    """Given ids that URLs lose or that look like other ids, when a member is created or enrolled with one,
    then 400 names the field and its problem, and no member is created."""
    created = api.post("/api/v1/members/", {"member_id": member_id, "first_name": "R"}, format="json")
    enrolled = api.post(EVENTS, {"customer": member_id, "action": "opt_in", "data": {}}, format="json")

    assert created.status_code == 400 and error_of(created)["fields"] == {"member_id": [problem]}
    assert enrolled.status_code == 400 and error_of(enrolled)["fields"] == {"customer": [problem]}
    assert not Member.objects.exists()


def test_patch_changes_profile_and_custom_fields(api, enrol, custom_fields):
    """Given a member, when it is patched, then profile and custom fields are saved."""
    enrol("M-1")
    response = api.patch(
        "/api/v1/members/M-1/",
        {"last_name": "Hopper", "custom_fields": {"interests": ["navy"], "newsletter": False}},
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert response.json()["last_name"] == "Hopper"
    assert Member.objects.get().custom_fields == {"interests": ["navy"], "newsletter": False}


@pytest.mark.parametrize("value", [1e19, 1.234567e25, 1e308, 1e16])
def test_a_large_float_field_reads_back_as_the_float_it_was_and_a_get_patched_back_is_taken(api, enrol,
                                                                                          custom_fields, value):
    """PostgreSQL's jsonb wrote 1e+19 back as the integer 10000000000000000000: the GET gave an integer,
    and that body patched back was refused (integers must fit in 64 bits)."""
    enrol("M-1")
    assert api.patch("/api/v1/members/M-1/", {"custom_fields": {"avg_basket": value}}, format="json").status_code == 200

    read = api.get("/api/v1/members/M-1/").json()["custom_fields"]

    assert read["avg_basket"] == value and type(read["avg_basket"]) is float
    response = api.patch("/api/v1/members/M-1/", {"custom_fields": read}, format="json")
    assert response.status_code == 200, response.json()
    assert type(api.get("/api/v1/members/?page_size=5").json()["results"][0]["custom_fields"]["avg_basket"]) is float


def test_patch_of_a_json_value_that_python_takes_for_equal_is_saved(api, enrol, custom_fields):
    """``true`` and ``1`` are one value to Python, two to JSON and Braze."""
    enrol("M-1")
    api.patch("/api/v1/members/M-1/", {"custom_fields": {"preferences": {"vip": True, "n": 0}}}, format="json")

    response = api.patch("/api/v1/members/M-1/", {"custom_fields": {"preferences": {"vip": 1, "n": False}}},
                         format="json")

    assert response.status_code == 200, response.json()
    stored = Member.objects.get().custom_fields["preferences"]
    assert (stored["vip"], stored["n"]) == (1, False)
    assert stored["vip"] is not True and stored["n"] is False


def test_patch_that_sends_back_the_members_own_id_is_accepted(api, enrol):
    """Given a member, when it is read, edited and patched back with its own member_id, then the change is
    saved and the id is ignored."""
    enrol("M-1")
    body = {"member_id": api.get("/api/v1/members/M-1/").json()["member_id"], "last_name": "Hopper"}
    response = api.patch("/api/v1/members/M-1/", body, format="json")
    assert response.status_code == 200, response.json()
    assert (response.json()["member_id"], response.json()["last_name"]) == ("M-1", "Hopper")
    assert Member.objects.get().member_id == "M-1"


def test_patch_with_another_member_id_is_refused_and_changes_nothing(api, enrol):
    """Given a member, when a patch sends a different member_id, then 400 names it and nothing changes."""
    enrol("M-1")
    response = api.patch("/api/v1/members/M-1/", {"member_id": "M-2", "last_name": "Hopper"}, format="json")
    assert response.status_code == 400
    assert error_of(response)["fields"] == {"member_id": ["cannot be changed."]}
    assert Member.objects.get().last_name == ""


@pytest.mark.parametrize(
    "field", ["points_spendable", "points_earned", "tier", "purchase_total", "last_purchase"]
)
def test_patch_of_a_computed_field_is_refused_naming_it(api, enrol, field):
    """Given a member, when a computed field is patched, then the answer is 400 naming it and nothing
    changes.
    """
    enrol("M-1")
    response = api.patch("/api/v1/members/M-1/", {field: 99999}, format="json")
    assert response.status_code == 400
    assert error_of(response)["fields"] == {
        field: ["is computed by the loyalty engine and cannot be written."]
    }
    assert Member.objects.get().points_spendable == 0


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"email": "nope"}, "email"),
        ({"first_name": 12}, "first_name"),
        ({"birth_date": 19900101}, "birth_date"),
        ({"custom_fields": {"shoe_size": "big"}}, "custom_fields.shoe_size"),
        ({"custom_fields": {"unknown_key": 1}}, "custom_fields.unknown_key"),
        ({"custom_fields": ["not", "an", "object"]}, "custom_fields"),
        ({"member_id": "other"}, "member_id"),
        (["not", "an", "object"], "body"),
    ],
)
def test_patch_with_bad_values_names_the_field(api, enrol, custom_fields, body, path):
    """Given a member, when a bad value is patched, then the answer is 400 naming the field."""
    enrol("M-1")
    response = api.patch("/api/v1/members/M-1/", body, format="json")
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid" and path in error["fields"], error


def test_member_events_are_paginated_newest_first(api, enrol, record):
    """Given a member with events, when they are listed, then they come paginated, newest first."""
    enrol("M-1")
    record("M-1", "store_visit", effective_timestamp="2026-01-01T00:00:00Z")
    record("M-1", "point_add", points=5)
    body = api.get("/api/v1/members/M-1/events/").json()
    assert (len(body["results"]), body["next"]) == (3, None)  # opt_in, store_visit, point_add
    assert [event["action"] for event in body["results"]][0] == "point_add"
    assert body["results"][-1]["action"] == "store_visit"
    assert body["results"][0]["customer"] == "M-1"


# --- events ---------------------------------------------------------------------------------------


def test_post_event_answers_with_the_event_and_the_updated_member(api, enrol):
    """Given a member, when a checkout is posted, then the answer has the event and the updated member."""
    enrol("M-1")
    response = api.post(EVENTS, checkout_body(total=250), format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["event"]["action"] == "checkout" and body["event"]["transaction_id"] == "T-1"
    assert body["event"]["data"]["points_earned"] == 250
    assert (body["member"]["points_spendable"], body["member"]["purchase_count"]) == (250, 1)
    assert body["member"]["purchase_total"] == "250.00"


def test_events_url_with_trailing_slash_works_too(api, enrol):
    """Given a member, when an event is posted to /events/, then it is recorded too."""
    enrol("M-1")
    response = api.post(EVENTS + "/", {"customer": "M-1", "action": "store_visit"}, format="json")
    assert response.status_code == 201


def test_opt_in_through_the_api_creates_the_member(api, tiers, loyalty_settings):
    """Given no member, when opt_in is posted, then the member is created."""
    response = api.post(
        EVENTS, {"customer": "new-1", "action": "opt_in", "data": {"first_name": "Lin"}}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["member"]["first_name"] == "Lin"
    assert Member.objects.filter(member_id="new-1").exists()


def test_event_for_unknown_member_is_404(api, db):
    """Given no member 'ghost', when an event for it is posted, then the answer is 404 naming customer."""
    response = api.post(EVENTS, checkout_body(customer="ghost"), format="json")
    assert response.status_code == 404
    error = error_of(response)
    assert error["code"] == "member_not_found" and "customer" in error["fields"]


def test_duplicate_transaction_is_409_and_not_double_counted(api, enrol):
    """Given a checkout, when it is posted again, then the answer is 409 and it counts once."""
    enrol("M-1")
    assert api.post(EVENTS, checkout_body(), format="json").status_code == 201
    response = api.post(EVENTS, checkout_body(), format="json")
    assert response.status_code == 409
    assert error_of(response)["code"] == "duplicate_transaction"
    assert Member.objects.get().purchase_count == 1


def test_overspending_is_409(api, enrol):
    """Given a member without points, when points are spent, then the answer is 409 insufficient_points."""
    enrol("M-1")
    response = api.post(
        EVENTS, {"customer": "M-1", "action": "point_spend", "data": {"points": 5}}, format="json"
    )
    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "insufficient_points" and error["fields"] == {"data.points": [error["message"]]}


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"customer": "M-1", "action": "checkout", "data": []}, "data"),
        ({"customer": "M-1", "action": "checkout", "data": "x"}, "data"),
        ({"customer": 5, "action": "checkout"}, "customer"),
        ({"customer": "M 1", "action": "checkout"}, "customer"),
        ({"action": "checkout"}, "customer"),
        ({"customer": "M-1", "action": ["checkout"]}, "action"),
        ({"customer": "M-1", "action": "Bad Action"}, "action"),
        ({"customer": "M-1", "action": "checkout", "data": {"total": "x"}}, "data.total"),
        (checkout_body(total=1e308), "data.total"),
        (checkout_body(total=10**300), "data.total"),
        (
            checkout_body(items=[{"product_id": "P", "product_name": "N", "price": 1, "quantity": -1}]),
            "data.items[0].quantity",
        ),
        ("just a string", "body"),
    ],
)
def test_bad_events_are_400_naming_the_field(api, enrol, body, path):
    """Given a member, when an invalid event is posted, then the answer is 400 naming the field."""
    enrol("M-1")
    response = api.post(EVENTS, body, format="json")
    assert response.status_code == 400, response.content
    error = error_of(response)
    assert path in error["fields"], error


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b'{"customer": "M-1", "action": "x", "data": {"n": NaN}}',
        b'{"customer": "M-1", "action": "x", "data": {"n": 1e400}}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"customer": "M-1", "action": "x", "data": {"s": "\\ud800"}}',
        b'{"customer": "M-1", "action": "x", "data": {"s": "nul\\u0000"}}',
    ],
)
def test_malformed_json_is_400_not_500(api, enrol, raw):
    """Given a member, when malformed or hostile JSON is posted, then the answer is 400, never 500."""
    enrol("M-1")
    response = api.post(EVENTS, raw, content_type="application/json")
    assert response.status_code == 400, response.content
    assert error_of(response)["fields"]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"gender": "\\ud800"}',
        b'{"status": "nul\\u0000"}',
        b'{"\\ud800": 1}',
        b'{"custom_fields": {"\\ud800": 1}}',
        b'{"custom_fields": {"nul\\u0000": 1}}',
        b'{"custom_fields": {"preferences": {"\\ud800": 1}}}',
    ],
)
def test_patch_with_hostile_text_is_400_not_500(api, enrol, custom_fields, raw):
    """Given a member, when a patch quotes invalid Unicode or NUL characters, then the answer is a 400 that
    can be encoded."""
    enrol("M-1")
    response = api.generic("PATCH", "/api/v1/members/M-1/", raw, content_type="application/json")
    assert response.status_code == 400, response.content
    assert error_of(response)["fields"]


@pytest.mark.parametrize("field, value, found", [("first_name", "Ann\nq-2,Bob", "a line break"),
                                                  ("last_name", "Love\r\nlace", "a line break"),
                                                  ("email", "ada@exa\tmple.com", "a tab"),
                                                  ("phone", "+49\x1b30", "U+001B"),
                                                  ("first_name", "A\u2028B", "a line break")])
def test_a_profile_value_is_one_line_without_control_characters(api, enrol, field, value, found):
    enrol("M-1", first_name="Ada")
    response = api.patch("/api/v1/members/M-1/", {field: value}, format="json")
    assert response.status_code == 400, response.content
    assert error_of(response)["fields"] == {field: [f"must be one line without control characters (found {found})."]}
    assert api.get("/api/v1/members/M-1/").json()[field] == {"first_name": "Ada"}.get(field, "")


def test_a_line_break_at_either_end_of_a_profile_value_is_dropped_as_a_space_is(api, enrol):
    enrol("M-1")
    response = api.patch("/api/v1/members/M-1/", {"first_name": "\tAda\r\n"}, format="json")
    assert response.status_code == 200 and response.json()["first_name"] == "Ada"


@pytest.mark.parametrize("transaction_id", ["  ", "\t", "\u200b"])
def test_a_checkout_whose_order_id_is_blank_is_a_400_naming_it(api, enrol, transaction_id):
    enrol("M-1")
    response = api.post(EVENTS, checkout_body(transaction_id=transaction_id), format="json")
    assert response.status_code == 400
    assert error_of(response)["fields"] == {"data.transaction_id": ["must not be blank."]}


def test_an_event_with_a_key_misspelt_at_the_top_is_a_400_naming_it_and_records_nothing(api, enrol):
    """"dta" for "data" recorded a checkout without its data."""
    from loyaltysync.models import LoyaltyEvent

    enrol("M-1")
    before = LoyaltyEvent.objects.count()
    response = api.post(EVENTS, {"customer": "M-1", "action": "point_add", "dta": {"points": 5}}, format="json")

    assert response.status_code == 400
    assert error_of(response)["fields"] == {"dta": ["is not a field of an event (customer, action, data)."]}
    assert LoyaltyEvent.objects.count() == before


def test_a_bulk_request_with_a_key_misspelt_at_the_top_is_a_400_naming_it_and_records_nothing(api, enrol):
    from loyaltysync.models import LoyaltyEvent

    enrol("M-1")
    before = LoyaltyEvent.objects.count()
    event = {"customer": "M-1", "action": "point_add", "data": {"points": 5}}
    response = api.post(f"{EVENTS}/bulk", {"events": [event], "evnets": 1}, format="json")

    assert response.status_code == 400, response.content
    assert error_of(response)["fields"] == {"evnets": ["is not a field of a bulk request (events)."]}
    assert LoyaltyEvent.objects.count() == before


def test_a_body_that_is_not_json_is_415(api, db):
    """Given a form-encoded body, when it is posted, then the answer is 415 in the error shape."""
    response = api.post(EVENTS, "customer=M-1", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"


def test_error_messages_do_not_leak_other_members_data(api, enrol, record):
    """Given another member's checkout, when it is refunded or duplicated by someone else, then the error
    does not mention that member.
    """
    enrol("M-2", email="secret@example.com")
    record("M-2", "checkout", transaction_id="T-2", total=70, currency="EUR")
    enrol("M-1")
    responses = [
        api.post(
            EVENTS, {"customer": "M-1", "action": "refund", "data": {"transaction_id": "T-2"}}, format="json"
        ),
        api.post(EVENTS, checkout_body(transaction_id="T-2"), format="json"),
    ]
    for response in responses:
        assert response.status_code in (400, 409)
        assert "M-2" not in response.content.decode() and "secret" not in response.content.decode()


# --- bulk -----------------------------------------------------------------------------------------------


def test_bulk_answers_per_event_and_one_bad_event_does_not_stop_the_others(api, enrol):
    # Given events of which the 2nd has invalid data, the 3rd an unknown member and the 4th a duplicate id
    enrol("M-1")
    events = [
        checkout_body(transaction_id="T-1", total=10),
        {
            "customer": "M-1",
            "action": "checkout",
            "data": {"transaction_id": "T-2", "total": -1, "currency": "EUR"},
        },
        checkout_body(customer="ghost", transaction_id="T-3"),
        checkout_body(transaction_id="T-1", total=10),
        {"customer": "M-1", "action": "point_spend", "data": {"points": 500}},
        {"customer": "M-1", "action": "point_add", "data": {"points": 5}},
    ]

    # When they are posted in bulk
    response = api.post(EVENTS + "/bulk", {"events": events}, format="json")

    # Then each is answered in order, and the good ones are recorded
    assert response.status_code == 200
    body = response.json()
    assert (body["total"], body["errors"]) == (6, 4)
    assert [result["index"] for result in body["results"]] == list(range(6))
    assert [result["status"] for result in body["results"]] == [201, 400, 404, 409, 409, 201]
    assert "data.total" in body["results"][1]["error"]["fields"]
    assert body["results"][2]["error"]["code"] == "member_not_found"
    assert body["results"][4]["error"]["code"] == "insufficient_points"
    assert body["results"][5]["event"]["action"] == "point_add"
    member = Member.objects.get()
    assert (member.purchase_count, member.points_earned) == (1, 15)


def test_bulk_with_a_misshapen_event_is_refused_as_a_whole_naming_it(api, enrol):
    """Given events of which some do not have the documented shape, when they are posted in bulk, then the
    request is refused naming them and nothing is recorded.
    """
    enrol("M-1")
    events = [
        {"customer": "M-1", "action": "point_add", "data": {"points": 5}},
        {"customer": "M-1", "action": "checkout", "data": ["not", "an", "object"]},
        "not an event",
    ]
    response = api.post(EVENTS + "/bulk", {"events": events}, format="json")
    assert response.status_code == 400
    assert set(error_of(response)["fields"]) == {"events[1].data", "events[2]"}
    assert not LoyaltyEvent.objects.filter(action="point_add").exists()


def test_bulk_with_too_many_events_is_refused_as_a_whole(api, enrol, loyalty_settings):
    """Given 101 events, when they are posted in bulk, then the answer is 400 naming events and nothing is
    recorded.
    """
    enrol("M-1")
    events = [{"customer": "M-1", "action": "store_visit"}] * 101
    response = api.post(EVENTS + "/bulk", {"events": events}, format="json")
    assert response.status_code == 400
    assert list(error_of(response)["fields"]) == ["events"]
    assert not LoyaltyEvent.objects.filter(action="store_visit").exists()


@pytest.mark.parametrize("body", [{"events": "x"}, {}, [], {"events": {"a": 1}}])
def test_bulk_that_is_not_a_list_of_events_names_events(api, db, body):
    """Given a body without a list of events, when it is posted in bulk, then the answer is 400 naming it."""
    response = api.post(EVENTS + "/bulk", body, format="json")
    assert response.status_code == 400
    assert list(error_of(response)["fields"]) in (["events"], ["body"])


# --- schema -----------------------------------------------------------------------------------------------


def test_openapi_schema_documents_the_endpoints_and_error_shape(api):
    """Given the API, when its schema is fetched, then it documents the endpoints, the error answers and
    the read-only fields.
    """
    response = api.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    schema = (
        json.loads(response.content)
        if response["Content-Type"].startswith("application/json")
        else (yaml.safe_load(response.content))
    )
    paths = schema["paths"]
    assert {
        "/api/v1/members/",
        "/api/v1/members/{member_id}/",
        "/api/v1/members/{member_id}/events/",
        "/api/v1/events",
        "/api/v1/events/bulk",
    } <= set(paths)
    event_post = paths["/api/v1/events"]["post"]["responses"]
    assert {"201", "400", "401", "404", "409"} <= set(event_post)
    assert event_post["409"]["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/Error"
    error_detail = schema["components"]["schemas"]["ErrorDetail"]
    assert set(error_detail["properties"]) == {"code", "message", "fields", "details"}
    member_props = schema["components"]["schemas"]["Member"]["properties"]
    assert member_props["points_spendable"]["readOnly"] is True
