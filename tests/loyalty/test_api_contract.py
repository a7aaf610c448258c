"""What an integrator's program relies on: error codes per field, every error status and each action's
data in the schema, rate-limit headers on every answer, and CORS only when configured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from loyaltysync.models import CustomAction

pytestmark = pytest.mark.django_db

EVENTS = "/api/v1/events"
ROOT = Path(__file__).resolve().parents[2]


def codes_of(response) -> dict[str, list[str]]:
    codes: dict[str, list[str]] = {}
    for detail in response.json()["error"]["details"]:
        codes.setdefault(detail["field"], []).append(detail["code"])
    return codes


@pytest.fixture
def schema(api) -> dict:
    return api.get("/api/schema/", HTTP_ACCEPT="application/json").json()


# --- error codes --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "field", "code"),
    [
        ({"points": 0}, "data.points", "min_value"),
        ({"points": 10**12}, "data.points", "max_value"),
        ({}, "data.points", "required"),
        ({"points": "ten"}, "data.points", "invalid"),
        ({"points": 5, "effective_timestamp": "2999-01-01T00:00:00Z"}, "data.effective_timestamp", "max_value"),
    ],
)
def test_each_problem_of_an_event_carries_a_code(api, enrol, data, field, code):
    """Given a point_add with a bad value, when it is posted, then the 400 names the field with the code a
    program can act on, next to the message for people."""
    enrol("M-1")
    response = api.post(EVENTS, {"customer": "M-1", "action": "point_add", "data": data}, format="json")
    assert response.status_code == 400
    assert codes_of(response) == {field: [code]}
    assert response.json()["error"]["details"][0]["message"] == response.json()["error"]["fields"][field][0]


def test_checkout_problems_each_have_their_code(api, enrol):
    """Given a checkout without total and with a too long transaction id, when it is posted, then each
    problem has its own code."""
    enrol("M-1")
    response = api.post(
        EVENTS,
        {"customer": "M-1", "action": "checkout", "data": {"transaction_id": "T" * 200, "currency": "EUR"}},
        format="json",
    )
    assert codes_of(response) == {"data.transaction_id": ["max_length"], "data.total": ["required"]}


def test_member_field_errors_carry_drf_and_service_codes(api, enrol, custom_fields):
    """Given a member, when a bad gender (a choice) and an unknown custom field are patched, then the codes
    are invalid_choice and unknown_field."""
    enrol("M-1")
    response = api.patch(
        "/api/v1/members/M-1/", {"gender": "robot", "custom_fields": {"nope": 1}}, format="json"
    )
    assert response.status_code == 400
    assert codes_of(response) == {"gender": ["invalid_choice"]}  # the serializer refuses before the services
    response = api.patch("/api/v1/members/M-1/", {"custom_fields": {"nope": 1, "shoe_size": "big"}}, format="json")
    assert codes_of(response) == {"custom_fields.nope": ["unknown_field"], "custom_fields.shoe_size": ["invalid"]}


def test_unknown_member_fields_and_values_over_a_limit_carry_their_codes(api, enrol, custom_fields):
    """Given a member, when an unknown member field, a computed one, or a custom value over Braze's length
    is patched, then the codes are unknown_field, invalid and max_length."""
    enrol("M-1")
    response = api.patch("/api/v1/members/M-1/", {"bogus": 1, "points_spendable": 5}, format="json")
    assert codes_of(response) == {"bogus": ["unknown_field"], "points_spendable": ["invalid"]}
    long_text = {key: "x" * 256 for key, field in custom_fields.items() if field.type == "string"}
    assert long_text, "the custom_fields fixture has a string field"
    response = api.patch("/api/v1/members/M-1/", {"custom_fields": long_text}, format="json")
    assert codes_of(response) == {f"custom_fields.{key}": ["max_length"] for key in long_text}


def test_a_misspelt_data_key_is_refused_with_the_key_it_meant_and_other_keys_are_kept(api, enrol):
    """Given a checkout with points_burnt (meant: points_burned, which would burn nothing if ignored), then
    400 names it with the key it meant; a key that resembles none (a store) is kept with the event."""
    enrol("M-1")
    response = api.post(EVENTS, {"customer": "M-1", "action": "checkout", "data": {
        "transaction_id": "T-1", "total": 10, "currency": "EUR", "points_burnt": 5}}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "data.points_burnt": ["is not a field of checkout; did you mean points_burned?"]}
    assert codes_of(response) == {"data.points_burnt": ["unknown_field"]}

    response = api.post(EVENTS, {"customer": "M-1", "action": "checkout", "data": {
        "transaction_id": "T-1", "total": 10, "currency": "EUR", "store": "Berlin"}}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["event"]["data"]["store"] == "Berlin"


def test_the_schema_documents_the_data_keys_the_services_read():
    from loyaltysync.api.event_schemas import _DATA
    from loyaltysync.services.events import ACTION_DATA_KEYS

    for action, keys in ACTION_DATA_KEYS.items():
        assert set(_DATA[action]().fields) == keys, action


def test_conflicts_and_bulk_results_carry_codes_too(api, enrol):
    """Given a member, when it is created again and a bulk request spends too much, then the conflict's
    field and the refused event's field carry the error's own code."""
    enrol("M-1")
    response = api.post("/api/v1/members/", {"member_id": "M-1"}, format="json")
    assert response.status_code == 409 and codes_of(response) == {"member_id": ["member_exists"]}
    bulk = api.post(
        EVENTS + "/bulk",
        {"events": [{"customer": "M-1", "action": "point_spend", "data": {"points": 5}}]},
        format="json",
    ).json()
    assert bulk["results"][0]["error"]["details"] == [
        {"field": "data.points", "code": "insufficient_points", "message": bulk["results"][0]["error"]["message"]}
    ]


def test_a_body_too_large_is_413_with_a_code(api, settings, db):
    """Given a 1 KB limit, when a larger body is posted, then the answer is 413 too_large naming the body."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    response = api.post(EVENTS, {"customer": "M-1", "action": "visit", "data": {"x": "y" * 2000}}, format="json")
    assert response.status_code == 413
    assert codes_of(response) == {"body": ["too_large"]}


# --- the schema -------------------------------------------------------------------------------------------


def test_every_operation_documents_its_error_statuses(schema):
    """Given the schema, when each operation is read, then 401, 403, 429 and 503 are documented everywhere,
    400, 413 and 415 wherever a body is taken, and every error answer has the one error shape."""
    for path, operations in schema["paths"].items():
        if not path.startswith("/api/v1/"):
            continue
        for method, operation in operations.items():
            statuses = set(operation["responses"])
            assert {"401", "403", "429", "503"} <= statuses, (method, path)
            if "requestBody" in operation:
                assert {"400", "413", "415"} <= statuses, (method, path)
            for status, answer in operation["responses"].items():
                if int(status) >= 400:
                    ref = answer["content"]["application/json"]["schema"]["$ref"]
                    assert ref == "#/components/schemas/Error", (method, path, status)


def test_each_event_action_has_its_own_typed_schema_and_an_example(schema):
    """Given the schema, when the event request is read, then it is oneOf one schema per action, each with
    its action fixed, checkout's data typed (total a number, items objects), and examples per action."""
    components = schema["components"]["schemas"]
    variants = [ref["$ref"].split("/")[-1] for ref in components["EventInput"]["oneOf"]]
    assert {"CheckoutEvent", "OptInEvent", "PointAddEvent", "RefundEvent", "CustomEvent"} <= set(variants)
    actions = {}
    for name in variants:
        action = components[name]["properties"]["action"]
        if "$ref" in action:
            action = components[action["$ref"].split("/")[-1]]
        actions[name] = action
    assert actions["CheckoutEvent"]["enum"] == ["checkout"]
    assert "checkout" in actions["CustomEvent"]["not"]["enum"]  # the variants never overlap

    checkout = components[components["CheckoutEvent"]["properties"]["data"]["$ref"].split("/")[-1]]
    assert checkout["properties"]["total"]["type"] == "number"
    assert {"transaction_id", "total", "currency"} <= set(checkout["required"])
    assert checkout["properties"]["items"]["items"]["$ref"].endswith("/CheckoutItem")

    operation = schema["paths"]["/api/v1/events"]["post"]
    body = operation["requestBody"]["content"]["application/json"]
    assert body["schema"]["$ref"] == "#/components/schemas/EventInput"
    example_actions = {example["value"]["action"] for example in body["examples"].values()}
    assert {"checkout", "opt_in", "point_add", "refund", "opt_out"} <= example_actions
    bulk = schema["paths"]["/api/v1/events/bulk"]["post"]["requestBody"]["content"]["application/json"]
    bulk_schema = components[bulk["schema"]["$ref"].split("/")[-1]]
    assert bulk_schema["properties"]["events"]["items"]["$ref"] == "#/components/schemas/EventInput"


def test_the_documented_examples_are_accepted(api, enrol, custom_fields, schema):
    """Given the members the examples name, when every documented example is posted in order, then each
    is recorded (the examples are not just decoration)."""
    enrol("C-1001")
    CustomAction.objects.get_or_create(name="review_written")
    examples = schema["paths"]["/api/v1/events"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    order = ["Checkout", "OptIn", "Profile", "Refund", "PointAdd", "PointSpend", "CustomAction", "OptOut"]
    assert set(order) == set(examples)
    for name in order:
        response = api.post(EVENTS, examples[name]["value"], format="json")
        assert response.status_code == 201, (name, response.json())


# --- rate-limit headers -------------------------------------------------------------------------------------


@pytest.fixture
def five_per_minute(settings):
    cache.clear()
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"token": "5/min"}}
    yield
    cache.clear()


def limits(response) -> tuple[int, int, int]:
    return (
        int(response["X-RateLimit-Limit"]),
        int(response["X-RateLimit-Remaining"]),
        int(response["X-RateLimit-Reset"]),
    )


@pytest.mark.usefixtures("five_per_minute")
def test_every_answer_carries_the_rate_limit_and_it_counts_down(api, enrol):
    """Given 5 requests a minute, when a success, a 400, a 404 and an event are sent, then each answer says
    the limit and what remains, counting down, and the reset is a minute after the first."""
    enrol("M-1")
    before = time.time()
    answers = [
        api.get("/api/v1/members/"),
        api.get("/api/v1/members/", {"status": "sleeping"}),
        api.get("/api/v1/members/ghost/"),
        api.post(EVENTS, {"customer": "M-1", "action": "visit"}, format="json"),
    ]
    after = time.time()
    assert [answer.status_code for answer in answers] == [200, 400, 404, 201]
    assert [limits(answer)[:2] for answer in answers] == [(5, 4), (5, 3), (5, 2), (5, 1)]
    # The first request leaves the window a minute after it was counted (between before and after: a busy
    # machine may take over a second for it), rounded up to the second.
    assert all(before + 60 <= limits(answer)[2] <= after + 61 for answer in answers)


@pytest.mark.usefixtures("five_per_minute")
def test_a_throttled_answer_says_nothing_remains(api, db):
    """Given a spent budget, when one more request is sent, then the 429 says 0 remain and when to retry."""
    for _ in range(5):
        api.get("/api/v1/members/")
    throttled = api.get("/api/v1/members/")
    assert throttled.status_code == 429
    limit, remaining, reset = limits(throttled)
    assert (limit, remaining) == (5, 0)
    assert reset - time.time() <= int(throttled["Retry-After"]) + 1


@pytest.mark.usefixtures("five_per_minute")
def test_answers_refused_before_throttling_carry_the_headers_without_counting(anonymous_api, api, db):
    """Given no token, when the API answers 401, then it still carries the headers; reading them does not
    spend anyone's budget."""
    refused = anonymous_api.get("/api/v1/members/")
    assert refused.status_code == 401 and limits(refused)[:2] == (5, 5)
    assert limits(api.get("/api/v1/members/"))[:2] == (5, 4)


# --- CORS ----------------------------------------------------------------------------------------------------


def preflight(origin: str, path: str = "/api/v1/events"):
    return APIClient().options(
        path,
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type",
    )


def test_cors_is_off_unless_origins_are_configured(settings, db):
    """Given no CORS_ALLOWED_ORIGINS (the default), when a storefront's browser asks, then no CORS header
    is sent, so the browser refuses the call."""
    settings.CORS_ALLOWED_ORIGINS = []
    assert "Access-Control-Allow-Origin" not in preflight("https://shop.example.com")


def test_cors_allows_the_configured_origins_on_the_api_only(settings, api, enrol):
    """Given one allowed origin, when its browser asks, then the API allows it (with the headers a
    storefront needs and the rate-limit headers readable); another origin and the admin get nothing."""
    settings.CORS_ALLOWED_ORIGINS = ["https://shop.example.com"]
    answer = preflight("https://shop.example.com")
    assert answer["Access-Control-Allow-Origin"] == "https://shop.example.com"
    assert "authorization" in answer["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Origin" not in preflight("https://evil.example.com")
    assert "Access-Control-Allow-Origin" not in preflight("https://shop.example.com", "/admin/login/")

    enrol("M-1")
    response = api.get("/api/v1/members/", HTTP_ORIGIN="https://shop.example.com")
    exposed = response["Access-Control-Expose-Headers"].lower()
    assert "x-ratelimit-remaining" in exposed and "x-request-id" in exposed


def test_cors_origins_come_from_the_environment():
    """Given CORS_ALLOWED_ORIGINS in the environment, when the settings are read (in a fresh process), then
    they are its list; without it the list is empty."""

    def origins(**env: str) -> list[str]:
        environment = {key: value for key, value in os.environ.items() if key != "CORS_ALLOWED_ORIGINS"}
        code = "import json, loyaltysync.settings as s; print(json.dumps(s.CORS_ALLOWED_ORIGINS))"
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env={**environment, **env}, capture_output=True, text=True,
            timeout=60, check=True,
        )
        return json.loads(result.stdout)

    assert origins(CORS_ALLOWED_ORIGINS="https://a.example.com,https://b.example.com") == [
        "https://a.example.com",
        "https://b.example.com",
    ]
    assert origins() == []
