"""The REST API's defences: a token on every endpoint, token scopes, per-token throttling, body and batch
limits, JSON only, and errors that never tell one member's data to another caller."""

from __future__ import annotations

import importlib
import json
import re

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.generators import SchemaGenerator
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from loyaltysync import services
from loyaltysync.models import LoyaltyEvent, Member
from tests.api_scopes import grant_every_api_scope

pytestmark = pytest.mark.django_db

scopes_migration = importlib.import_module("loyaltysync.migrations.0003_api_scopes")
EVENTS = "/api/v1/events"
BULK = "/api/v1/events/bulk"
METHODS = ["get", "post", "put", "patch", "delete"]


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "fields", "details"}, body
    return body["error"]


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def members(db):
    services.event_record(member_id="M-1", action="opt_in", data={"email": "one@example.com"}, source="api")
    services.event_record(member_id="M-2", action="opt_in", data={"email": "two@example.com"}, source="api")
    services.event_record(
        member_id="M-2",
        action="checkout",
        data={"transaction_id": "T-2", "total": 70, "currency": "EUR"},
        source="api",
    )


# --- authentication on every endpoint ---------------------------------------------------------------


def api_urls() -> list[str]:
    """Every URL pattern under /api/, made concrete (a member id for path parameters)."""
    urls = []

    def walk(patterns, prefix):
        for pattern in patterns:
            route = str(pattern.pattern).lstrip("^").rstrip("$")
            route = re.sub(r"<[^>]+>", "M-1", route)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, prefix + route)
            elif isinstance(pattern, URLPattern):
                urls.append("/" + prefix + route)

    walk(get_resolver().url_patterns, "")
    return [url for url in urls if url.startswith("/api/")]


def test_the_url_walk_finds_every_api_endpoint():
    found = set(api_urls())
    assert {
        EVENTS,
        BULK,
        "/api/v1/events/",
        "/api/v1/members/",
        "/api/v1/members/M-1/",
        "/api/v1/members/M-1/events/",
        "/api/schema/",
        "/api/docs/",
    } <= found


# The OpenAPI schema and its docs page are public on purpose: they describe the API and hold no data.
PUBLIC = {"/api/schema/", "/api/docs/"}


@pytest.mark.parametrize("url", sorted(set(api_urls()) - PUBLIC))
@pytest.mark.parametrize("method", METHODS)
def test_every_api_url_refuses_a_caller_without_a_token(url, method, members):
    response = getattr(APIClient(), method)(url, {}, format="json")

    assert response.status_code == 401, (method, url, response.status_code)
    assert response["WWW-Authenticate"] == "Token"


@pytest.mark.parametrize("url", sorted(PUBLIC))
def test_the_public_schema_and_docs_hold_no_member_data_and_take_no_writes(url, members):
    client = APIClient()

    page = client.get(url).content.decode()

    assert "M-1" not in page and "one@example.com" not in page
    for method in ("post", "put", "patch", "delete"):
        assert getattr(client, method)(url, {}, format="json").status_code in (401, 403, 405)


SCHEMA = SchemaGenerator().get_schema(request=None, public=True)
OPERATIONS = [
    (method, path.replace("{member_id}", "M-1"))
    for path, operations in SCHEMA["paths"].items()
    for method in operations
    if method in METHODS
]


def test_every_documented_operation_declares_token_authentication():
    assert OPERATIONS
    for path, operations in SCHEMA["paths"].items():
        for method, operation in operations.items():
            assert operation["security"] == [{"tokenAuth": []}], (method, path)


@pytest.mark.parametrize(("method", "url"), OPERATIONS)
def test_every_documented_operation_answers_401_in_the_error_shape_without_a_token(method, url, members):
    response = getattr(APIClient(), method)(url, {}, format="json")

    assert response.status_code == 401
    assert error_of(response)["code"] == "not_authenticated"


@pytest.mark.parametrize(
    "header", ["Token ", "Token not-a-key", "Bearer abc", "Token a b", "Basic Zm9vOmJhcg=="]
)
def test_a_malformed_or_unknown_token_is_refused(header, members):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    assert client.get("/api/v1/members/").status_code == 401


def test_the_token_of_an_inactive_user_is_refused(members):
    user = get_user_model().objects.create_user("gone", is_active=False)

    assert client_for(user).get("/api/v1/members/").status_code == 401


# --- token scopes -----------------------------------------------------------------------------------


@pytest.fixture
def scope_groups(db):
    scopes_migration.scopes_ensure(apps)  # again: transactional tests flush what migrations created
    return {name: Group.objects.get(name=name) for name in scopes_migration.GROUPS}


def user_with(username, *, groups=(), permissions=(), **flags):
    user = get_user_model().objects.create_user(username, **flags)
    user.groups.add(*groups)
    user.user_permissions.add(
        *(
            Permission.objects.get(content_type__app_label="loyaltysync", codename=code)
            for code in permissions
        )
    )
    return user


def scoped_user(username):
    """A user who may do everything the API offers (an integration with every scope)."""
    return grant_every_api_scope(user_with(username))


# (method, url, body) -> the permission it needs
REQUESTS = {
    "list members": ("get", "/api/v1/members/", None),
    "get a member": ("get", "/api/v1/members/M-1/", None),
    "member events": ("get", "/api/v1/members/M-1/events/", None),
    "create a member": ("post", "/api/v1/members/", {"member_id": "M-9"}),
    "change a member": ("patch", "/api/v1/members/M-1/", {"first_name": "Ada"}),
    "send an event": ("post", EVENTS, {"customer": "M-1", "action": "visit"}),
    "send events in bulk": ("post", BULK, {"events": [{"customer": "M-1", "action": "visit"}]}),
}
READ = {"list members", "get a member", "member events"}
WRITE = {"create a member", "change a member"}
SEND = {"send an event", "send events in bulk"}


@pytest.mark.parametrize(
    ("who", "allowed"),
    [
        ("events sender", SEND),
        ("members reader", READ),
        ("members writer", WRITE),
        ("reader and sender", READ | SEND),
        # Fail closed: holding none of the API permissions grants nothing, whatever else the user may do.
        ("staff without API permissions", set()),
        ("superuser", READ | WRITE | SEND),
        ("user without API permissions", set()),
    ],
)
def test_a_token_does_only_what_its_scopes_allow(who, allowed, scope_groups, members):
    sender, reader = (
        scope_groups[scopes_migration.EVENTS_SENDER],
        scope_groups[scopes_migration.MEMBERS_READER],
    )
    user = {
        "events sender": lambda: user_with("u", groups=[sender]),
        "members reader": lambda: user_with("u", groups=[reader]),
        "members writer": lambda: user_with("u", permissions=["write_members"]),
        "reader and sender": lambda: user_with("u", groups=[reader, sender]),
        "staff without API permissions": lambda: user_with("u", is_staff=True),
        "superuser": lambda: get_user_model().objects.create_superuser("u", "u@example.com", None),
        "user without API permissions": lambda: user_with("u"),
    }[who]()
    client = client_for(user)

    for name, (method, url, body) in REQUESTS.items():
        response = getattr(client, method)(url, body, format="json")
        if name in allowed:
            assert response.status_code in (200, 201), (who, name, response.content)
        else:
            assert response.status_code == 403, (who, name, response.status_code)
            error = error_of(response)
            assert error["code"] == "permission_denied"
            assert "loyaltysync." in error["message"]


def test_a_refused_scope_changes_nothing(scope_groups, members):
    client = client_for(user_with("u", groups=[scope_groups[scopes_migration.MEMBERS_READER]]))
    events_before = LoyaltyEvent.objects.count()

    client.post(EVENTS, {"customer": "M-1", "action": "point_add", "data": {"points": 5}}, format="json")
    client.patch("/api/v1/members/M-1/", {"first_name": "Mallory"}, format="json")
    client.post("/api/v1/members/", {"member_id": "M-9"}, format="json")

    assert LoyaltyEvent.objects.count() == events_before
    assert not Member.objects.filter(member_id="M-9").exists()
    assert Member.objects.get(member_id="M-1").first_name == ""


def test_the_migration_creates_the_groups_with_their_permissions(scope_groups):
    def codes(name):
        return {p.codename for p in scope_groups[name].permissions.all()}

    assert codes(scopes_migration.EVENTS_SENDER) == {"send_events"}
    assert codes(scopes_migration.MEMBERS_READER) == {"read_members"}
    assert Permission.objects.filter(content_type__app_label="loyaltysync", codename="write_members").exists()


# --- throttling ---------------------------------------------------------------------------------------


@pytest.fixture
def three_per_minute(settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"token": "3/min"}}


@pytest.mark.usefixtures("three_per_minute")
def test_a_token_over_its_rate_gets_429_in_the_error_shape_and_others_are_not_held_back(members):
    first = client_for(scoped_user("first"))
    second = client_for(scoped_user("second"))

    answers = [first.get("/api/v1/members/").status_code for _ in range(3)]
    throttled = first.post(EVENTS, {"customer": "M-1", "action": "visit"}, format="json")

    assert answers == [200, 200, 200]
    assert throttled.status_code == 429
    error = error_of(throttled)
    assert error["code"] == "throttled" and "seconds" in error["message"]
    assert 0 < int(throttled["Retry-After"]) <= 60
    assert second.get("/api/v1/members/").status_code == 200  # its own budget
    assert not LoyaltyEvent.objects.filter(action="visit").exists()  # the throttled event was not recorded


@pytest.mark.usefixtures("three_per_minute")
def test_the_throttle_counts_per_token_not_per_address(members):
    clients = [client_for(scoped_user(f"shop-{i}")) for i in range(3)]  # all from the same address

    for client in clients:
        assert [client.get("/api/v1/members/").status_code for _ in range(3)] == [200, 200, 200]
    assert clients[0].get("/api/v1/members/").status_code == 429


def test_the_throttle_cache_never_holds_a_token(settings, members):
    from django.core.cache import cache

    from loyaltysync.api.throttling import TokenRateThrottle

    user = scoped_user("shop")
    token = Token.objects.create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    client.get("/api/v1/members/")

    request = type("R", (), {"auth": token, "user": user})()
    key = TokenRateThrottle().get_cache_key(request, None)
    assert token.key not in key
    assert cache.get(key)  # the request was counted under it


# --- sizes ----------------------------------------------------------------------------------------------


@pytest.fixture
def api(members) -> APIClient:
    return client_for(scoped_user("shop"))


@pytest.mark.parametrize(
    ("method", "url"),
    [("post", EVENTS), ("post", BULK), ("post", "/api/v1/members/"), ("patch", "/api/v1/members/M-1/")],
)
def test_a_body_over_the_limit_is_413_naming_the_limit_and_is_not_parsed(api, settings, method, url):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"customer": "M-1", "action": "visit", "data": {"note": "x" * 2000}})

    response = getattr(api, method)(url, body, content_type="application/json")
    not_json = getattr(api, method)(url, "{" * 1001, content_type="application/json")

    assert response.status_code == 413 and not_json.status_code == 413
    error = error_of(response)
    assert error["code"] == "too_large"
    assert error["message"] == f"The request body is {len(body)} bytes; the API accepts at most 1000 bytes."
    assert error["fields"] == {"body": [error["message"]]}
    assert error_of(not_json)["message"].startswith("The request body is 1001 bytes")
    assert not LoyaltyEvent.objects.filter(action="visit").exists()


def test_a_body_django_finds_too_big_while_reading_is_the_same_413(api, settings, monkeypatch):
    # Given the Content-Length check out of the way, so only Django's own check (when DRF reads
    # request.body to parse JSON) stands
    from loyaltysync.api import permissions

    monkeypatch.setattr(permissions.BodyWithinLimit, "has_permission", lambda self, request, view: True)
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"customer": "M-1", "action": "visit", "data": {"note": "x" * 2000}})

    response = api.post(EVENTS, body, content_type="application/json")

    assert response.status_code == 413
    assert (
        error_of(response)["message"] == "The request body is too large; the API accepts at most 1000 bytes."
    )


def test_the_default_body_limit_is_one_megabyte(api):
    body = json.dumps({"customer": "M-1", "action": "visit", "data": {"note": "x" * (1024 * 1024)}})

    response = api.post(EVENTS, body, content_type="application/json")

    assert response.status_code == 413
    assert "at most 1048576 bytes" in error_of(response)["message"]


def test_a_caller_without_a_token_hears_401_not_the_size_limit(settings, members):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000

    response = APIClient().post(EVENTS, "x" * 5000, content_type="application/json")

    assert response.status_code == 401


def nested(depth: int):
    value: dict | int = 1
    for _ in range(depth):
        value = {"k": value}
    return value


def test_event_data_nested_deeper_than_allowed_is_400_naming_where(api):
    response = api.post(EVENTS, {"customer": "M-1", "action": "visit", "data": nested(25)}, format="json")

    assert response.status_code == 400
    error = error_of(response)
    [(path, problems)] = error["fields"].items()
    assert path.startswith("data.k.k") and "nested too deeply" in problems[0]


def test_a_body_nested_deeper_than_the_parser_can_go_is_400_not_500(api):
    raw = '{"customer": "M-1", "action": "visit", "data": ' + "[" * 100_000 + "]" * 100_000 + "}"

    response = api.post(EVENTS, raw, content_type="application/json")

    assert response.status_code == 400
    assert "nested too deeply" in error_of(response)["message"]


def test_a_key_given_twice_in_one_object_is_400_not_the_last_value_silently(api):
    """JSON allows it and Python keeps the last: an event would be recorded for the second member."""
    raw = '{"customer": "M-1", "action": "visit", "customer": "M-2", "data": {}}'

    response = api.post(EVENTS, raw, content_type="application/json")

    assert response.status_code == 400
    assert "the key 'customer' appears twice in one object" in error_of(response)["message"]
    nested_twice = '{"customer": "M-1", "action": "visit", "data": {"a": 1, "a": 2}}'
    assert "the key 'a' appears twice" in error_of(api.post(EVENTS, nested_twice,
                                                           content_type="application/json"))["message"]


def test_nan_is_still_refused(api):
    response = api.post(EVENTS, '{"customer": "M-1", "action": "visit", "data": {"x": NaN}}',
                        content_type="application/json")

    assert response.status_code == 400
    assert "JSON parse error" in error_of(response)["message"]


def test_a_checkout_with_too_many_items_is_400_naming_data_items(api):
    items = [{"product_id": f"p-{i}", "product_name": "x", "price": 1, "quantity": 1} for i in range(501)]
    body = {
        "customer": "M-1",
        "action": "checkout",
        "data": {"transaction_id": "T-9", "total": 501, "currency": "EUR", "items": items},
    }

    response = api.post(EVENTS, body, format="json")

    assert response.status_code == 400
    assert "data.items" in error_of(response)["fields"]


def test_a_bulk_request_over_100_events_is_400_naming_events_and_records_nothing(api):
    events = [{"customer": "M-1", "action": "point_add", "data": {"points": 1}}] * 101

    response = api.post(BULK, {"events": events}, format="json")

    assert response.status_code == 400
    error = error_of(response)
    assert list(error["fields"]) == ["events"] and "At most 100" in error["fields"]["events"][0]
    assert not LoyaltyEvent.objects.filter(action="point_add").exists()
    assert api.post(BULK, {"events": events[:100]}, format="json").status_code == 200


# --- JSON only ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/x-www-form-urlencoded", "customer=M-1&action=visit"),
        (
            "multipart/form-data; boundary=XX",
            '--XX\r\nContent-Disposition: form-data; name="customer"\r\n\r\nM-1\r\n--XX--',
        ),
        ("application/xml", "<event><customer>M-1</customer><action>visit</action></event>"),
        ("text/xml", "<event/>"),
        ("text/plain", '{"customer": "M-1", "action": "visit"}'),
        ("application/yaml", "customer: M-1\naction: visit\n"),
    ],
)
@pytest.mark.parametrize(
    ("method", "url"),
    [("post", EVENTS), ("post", BULK), ("post", "/api/v1/members/"), ("patch", "/api/v1/members/M-1/")],
)
def test_anything_but_json_is_415_in_the_error_shape(api, content_type, body, method, url):
    response = getattr(api, method)(url, body, content_type=content_type)

    assert response.status_code == 415, response.content
    assert error_of(response)["code"] == "unsupported_media_type"
    assert not LoyaltyEvent.objects.filter(action="visit").exists()


# --- no member data across callers ----------------------------------------------------------------------


def test_errors_never_echo_another_member_s_data(api):
    other = ("M-2", "two@example.com", "T-2")
    responses = [
        api.get("/api/v1/members/M-3/"),
        api.patch("/api/v1/members/M-3/", {"first_name": "x"}, format="json"),
        api.post(EVENTS, {"customer": "M-3", "action": "visit"}, format="json"),
        # another member's transaction, as a duplicate checkout and as a refund
        api.post(
            EVENTS,
            {
                "customer": "M-1",
                "action": "checkout",
                "data": {"transaction_id": "T-2", "total": 5, "currency": "EUR"},
            },
            format="json",
        ),
        api.post(
            EVENTS, {"customer": "M-1", "action": "refund", "data": {"transaction_id": "T-2"}}, format="json"
        ),
        api.post(
            EVENTS,
            {"customer": "M-1", "action": "partial_refund", "data": {"transaction_id": "T-2", "amount": 1}},
            format="json",
        ),
        api.post(
            BULK,
            {
                "events": [
                    {
                        "customer": "M-1",
                        "action": "checkout",
                        "data": {"transaction_id": "T-2", "total": 5, "currency": "EUR"},
                    },
                    {"customer": "M-1", "action": "refund", "data": {"transaction_id": "T-2"}},
                ]
            },
            format="json",
        ),
        # the same e-mail as another member
        api.post(
            "/api/v1/members/",
            {"member_id": "M-4", "email": "two@example.com", "country": "Germany"},
            format="json",
        ),
    ]

    for response in responses:
        assert response.status_code in (200, 400, 404, 409), response.content
        text = response.content.decode()
        assert other[0] not in text and "two@" not in text, text
    assert responses[0].status_code == 404 and error_of(responses[0])["code"] == "member_not_found"
    assert responses[3].status_code == 409
    # the other member's transaction is untouched
    assert LoyaltyEvent.objects.filter(transaction_id="T-2").count() == 1
