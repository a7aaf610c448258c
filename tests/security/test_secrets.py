"""The Braze API key never leaves the database in clear.

Given a connection with a known key that has synced members (successes, a 5xx, a timeout, a 401 and
an error inside the HTTP library), the key is in none of: the admin's pages, the log output, reprs and
tracebacks, Django's error e-mails, ``dumpdata`` output, API answers, the request log rows. The
database holds ciphertext, not the key.
"""

from __future__ import annotations

import io
import logging
import traceback

import pytest
import urllib3
from django.contrib import admin
from django.core import mail
from django.core.management import call_command
from django.db import connection as db
from django.test import Client
from django.urls import path, reverse
from django.utils.log import AdminEmailHandler
from django.views.debug import ExceptionReporter
from rest_framework.authtoken.models import Token

from braze_integration import services
from braze_integration.client import BrazeClient
from braze_integration.models import (
    Connection,
    ConnectionStatus,
    MemberSyncState,
    OutboxItem,
    SyncRequest,
    SyncRequestMember,
)
from loyaltysync.models import Member

KEY = "bz-known-key-5f0c9e27-4d1a-4b8e-9c3f-8a6d2e1b7f40"
# Also never a recognisable piece of it (only the last four characters are ever shown).
KEY_PIECES = [KEY, KEY[:12], KEY[8:24], KEY[-12:]]


def assert_no_key(text: str, where: str = "") -> None:
    for piece in KEY_PIECES:
        assert piece not in text, f"the API key ({piece!r}) appears in {where or 'the output'}"


class Exploding(Exception):
    """Raised from inside the HTTP library: an unexpected error with the request's frames on the stack."""


@pytest.fixture
def keyed(braze_connection, sandbox):
    connection = Connection.objects.get(pk=braze_connection.pk)
    connection.set_api_key(KEY)
    connection.save()
    sandbox.set_keys([KEY])
    return connection


@pytest.fixture
def all_log_output(settings):
    """Every record any logger emits, down to DEBUG, formatted with its traceback, through the filters of the
    project's configured handlers (what a log file would hold)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    for configured in root.handlers:
        for log_filter in configured.filters:
            handler.addFilter(log_filter)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    quiet = {
        name: logging.getLogger(name).level for name in ("django-q", "urllib3", "axes", "django.db.backends")
    }
    for name in quiet:
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old_level)
    for name, level in quiet.items():
        logging.getLogger(name).setLevel(level)


def explode_inside_the_http_library(monkeypatch):
    """urllib3's connection pool raises with the request's headers (the Authorization header) among its locals."""
    urlopen = urllib3.connectionpool.HTTPConnectionPool.urlopen

    def exploding_urlopen(self, method, url, body=None, headers=None, *args, **kwargs):
        authorization = (headers or {}).get("Authorization")  # noqa: F841 (a local in every report of the frame)
        raise Exploding("the transport broke")

    assert urlopen is not None
    monkeypatch.setattr(urllib3.connectionpool.HTTPConnectionPool, "urlopen", exploding_urlopen)


def sync_through_everything(connection, sandbox, settings, monkeypatch) -> list[BaseException]:
    """Successes, a 503, a timeout, an exception inside the HTTP library, and a 401, as a worker would meet them."""
    logger = logging.getLogger("braze_integration.worker")
    raised: list[BaseException] = []
    members = [Member.objects.create(member_id=f"m-{i}", first_name="Ada") for i in range(3)]
    ids = [m.pk for m in members]

    def sync(**kwargs):
        try:
            services.member_sync_now(member_ids=ids, force=True, **kwargs)
        except Exception as err:  # what django-q2 does with a failing task
            raised.append(err)
            logger.exception("Sync failed")

    sync()  # 201
    sandbox.set_faults(fail_next=1)
    sync()  # 503
    settings.BRAZE_HTTP_TIMEOUT = 0.3
    sandbox.set_faults(timeout_rate=1.0)
    sync()  # no answer
    sandbox.set_faults(timeout_rate=0)
    sandbox.set_keys(["another-key-entirely-0000"])
    sync()  # 401: the connection needs attention
    services.connection_verify(connection=connection)  # 401 again, in Connect's words
    sandbox.set_keys([KEY])
    Connection.objects.filter(pk=connection.pk).update(status=ConnectionStatus.CONNECTED)
    with monkeypatch.context() as patch:
        explode_inside_the_http_library(patch)
        sync()
        try:
            services.connection_verify(connection=connection)
        except Exception as err:
            raised.append(err)
            logger.exception("Connect failed")
    return raised


@pytest.mark.usefixtures("all_log_output")
def test_the_database_holds_ciphertext_not_the_key(keyed):
    with db.cursor() as cursor:
        cursor.execute(
            f"SELECT api_key, api_key_hint FROM {Connection._meta.db_table} WHERE id = %s", [keyed.pk]
        )
        stored, hint = cursor.fetchone()

    assert_no_key(stored, "the api_key column")
    assert stored.startswith("gAAAAA")  # a Fernet token
    assert hint == KEY[-4:]
    assert Connection.objects.get(pk=keyed.pk).api_key == KEY


def test_no_log_line_holds_the_key(keyed, sandbox, settings, monkeypatch, all_log_output):
    raised = sync_through_everything(keyed, sandbox, settings, monkeypatch)

    # Code that logs the key itself, or an exception whose message quotes the Authorization header
    logger = logging.getLogger("braze_integration.worker")
    logger.error("Posting with %s", f"Authorization: Bearer {KEY}")
    try:
        raise ValueError(f"Invalid header value: {'Bearer ' + KEY!r}")
    except ValueError:
        logger.exception("Request failed")

    output = all_log_output.getvalue()
    assert "Sync failed" in output and "Exploding" in output  # the capture saw the failures with tracebacks
    assert "Posting with Authorization: Bearer ********" in output and "Invalid header value" in output
    assert "Invalid API Key" in output or SyncRequest.objects.filter(http_status=401).exists()
    assert raised
    assert_no_key(output, "the log output")


def test_no_repr_message_or_traceback_holds_the_key(keyed, sandbox, settings, monkeypatch):
    raised = sync_through_everything(keyed, sandbox, settings, monkeypatch)
    client = services.client_for(keyed)
    connection = Connection.objects.get(pk=keyed.pk)

    texts = {
        "repr(Connection)": repr(connection),
        "str(Connection)": str(connection),
        "vars(Connection)": repr(vars(connection)),
        "repr(api_key)": repr(connection.api_key),
        "repr(BrazeClient)": repr(client),
        "vars(BrazeClient)": repr(vars(client)),
        "repr(BrazeClient(...))": repr(BrazeClient("https://rest.fra-01.braze.eu", KEY)),
    }
    for err in raised:
        texts[f"str({type(err).__name__})"] = str(err)
        texts[f"repr({type(err).__name__})"] = repr(err)
        texts["traceback"] = "".join(traceback.format_exception(err))
        # Django's report of the same exception (as in an error e-mail), with every frame's variables
        texts["Django's report"] = ExceptionReporter(
            None, type(err), err, err.__traceback__
        ).get_traceback_text()
    assert len(raised) == 2
    for where, text in texts.items():
        assert_no_key(text, where)


# --- error e-mails ---------------------------------------------------------------------------------


def view_that_fails_with_the_connection_loaded(request):
    connection = Connection.objects.get()
    api_key = connection.api_key  # a local variable holding the key
    headers = {"Authorization": f"Bearer {api_key}"}  # noqa: F841 (it is the point: a local in the report)
    raise RuntimeError(f"something went wrong with {connection}")


urlpatterns = [
    path("fail/", view_that_fails_with_the_connection_loaded),
    path("admin/", admin.site.urls),
]


@pytest.fixture
def error_mails(settings):
    """Django's error e-mails, with the HTML report (every frame's local variables) attached as many sites
    configure them."""
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.DEBUG = False
    mail.outbox = []
    handlers = [h for h in logging.getLogger("django").handlers if isinstance(h, AdminEmailHandler)]
    assert handlers, "Django's mail_admins handler is not configured"
    for handler in handlers:
        handler.include_html = True
    yield mail.outbox
    for handler in handlers:
        handler.include_html = False


def mail_text(message) -> str:
    parts = [message.subject, message.body]
    parts += [content for content, _ in getattr(message, "alternatives", [])]
    parts += [str(attachment) for attachment in message.attachments]
    return "\n".join(parts)


@pytest.mark.urls(__name__)
def test_the_error_mail_of_a_view_failing_with_the_key_in_its_locals_does_not_hold_it(keyed, error_mails):
    client = Client(raise_request_exception=False)

    response = client.get("/fail/")

    assert response.status_code == 500
    assert len(error_mails) == 1
    text = mail_text(error_mails[0])
    assert "something went wrong" in text and "api_key" in text  # the report is there, with its variables
    assert_no_key(text, "the error e-mail")


def test_the_error_mail_of_connect_failing_inside_the_http_library_does_not_hold_the_key(
    keyed, error_mails, admin_user, monkeypatch
):
    client = Client(raise_request_exception=False)
    client.force_login(admin_user)

    with monkeypatch.context() as patch:
        explode_inside_the_http_library(patch)
        response = client.post(reverse("admin:braze_integration_connection_connect", args=[keyed.pk]))

    assert response.status_code == 500
    text = mail_text(error_mails[-1])
    assert "Exploding" in text
    assert_no_key(text, "the error e-mail")


def test_the_error_mail_of_saving_a_new_key_that_fails_does_not_hold_it(
    keyed, error_mails, admin_user, monkeypatch
):
    from tests.admin.conftest import connection_form

    client = Client(raise_request_exception=False)
    client.force_login(admin_user)
    Connection.objects.filter(pk=keyed.pk).update(api_key_hint="")
    monkeypatch.setattr(
        Connection, "save", lambda self, *a, **k: (_ for _ in ()).throw(RuntimeError("db down"))
    )

    response = client.post(
        reverse("admin:braze_integration_connection_change", args=[keyed.pk]),
        connection_form(keyed, new_api_key=KEY),
    )

    assert response.status_code == 500
    text = mail_text(error_mails[-1])
    assert "db down" in text and "new_api_key" in text  # the POST is reported, its value is not
    assert_no_key(text, "the error e-mail")


# --- pages, answers, exports and rows ---------------------------------------------------------------


def test_no_admin_page_shows_the_key(keyed, sandbox, settings, monkeypatch, admin_client):
    sync_through_everything(keyed, sandbox, settings, monkeypatch)
    member = Member.objects.first()
    pages = [
        reverse("admin:index"),
        reverse("admin:app_list", args=["braze_integration"]),
        reverse("admin:braze_integration_connection_changelist"),
        reverse("admin:braze_integration_connection_change", args=[keyed.pk]),
        reverse("admin:braze_integration_connection_history", args=[keyed.pk]),
        reverse("admin:braze_integration_dashboard"),
        reverse("admin:braze_integration_syncrequest_changelist"),
        *[
            reverse("admin:braze_integration_syncrequest_change", args=[pk])
            for pk in SyncRequest.objects.values_list("pk", flat=True)
        ],
        reverse("admin:braze_integration_membersyncstate_changelist"),
        reverse("admin:braze_integration_outboxitem_changelist"),
        reverse("admin:loyaltysync_member_changelist"),
        reverse("admin:loyaltysync_member_change", args=[member.pk]),
    ]
    for url in pages:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        assert_no_key(response.content.decode(), url)
    assert "…" + KEY[-4:] in admin_client.get(pages[3]).content.decode()


def test_dumpdata_and_the_request_log_rows_do_not_hold_the_key(keyed, sandbox, settings, monkeypatch):
    sync_through_everything(keyed, sandbox, settings, monkeypatch)
    assert SyncRequest.objects.filter(http_status=401).exists()
    assert SyncRequest.objects.filter(outcome="transport").exists()

    for fmt in ("json", "xml", "yaml"):
        out = io.StringIO()
        call_command("dumpdata", format=fmt, stdout=out)
        assert (
            "braze_integration.connection" in out.getvalue()
            or "braze_integration.Connection" in out.getvalue()
        )
        assert_no_key(out.getvalue(), f"dumpdata --format {fmt}")
    for model in (SyncRequest, SyncRequestMember, MemberSyncState, OutboxItem, Connection):
        assert_no_key(repr(list(model.objects.values())), f"the {model.__name__} rows")


def test_no_api_answer_holds_the_key(keyed, sandbox, settings, monkeypatch, admin_user):
    sync_through_everything(keyed, sandbox, settings, monkeypatch)
    client = Client()
    auth = {"HTTP_AUTHORIZATION": f"Token {Token.objects.create(user=admin_user).key}"}
    urls = [
        "/api/v1/members/",
        "/api/v1/members/m-1/",
        "/api/v1/members/m-1/events/",
        "/api/schema/",
        "/api/docs/",
    ]

    for url in urls:
        response = client.get(url, **auth)
        assert response.status_code == 200, url
        assert_no_key(response.content.decode(), url)
    response = client.post(
        "/api/v1/events", {"customer": "m-1", "action": "visit"}, "application/json", **auth
    )
    assert response.status_code == 201
    assert_no_key(response.content.decode(), "POST /api/v1/events")
