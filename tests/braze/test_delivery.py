"""Delivery: sending claimed members and carrying out each of Braze's answers, against a real
database and the sandbox over real HTTP (the outcomes themselves are decided in ``errors``)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import transaction
from django.utils import timezone

from braze_integration import delivery, errors, queue, services
from braze_integration.models import Connection, ConnectionStatus, MemberSyncState, SyncRequest, SyncStatus

from .members import claim_everyone, deliverer_for, make_member

pytestmark = pytest.mark.usefixtures("q_sync")


def test_given_a_429_then_the_members_are_given_back_without_an_attempt_and_the_connection_waits(
        braze_connection, sandbox):
    member = make_member("m-429")
    sandbox.set_faults(rate_limit="1/60s")
    deliverer_for(braze_connection).deliver(claim_everyone([member]), force=True)  # fills the window
    token = claim_everyone([member])

    round_ = delivery.deliver_claim(deliverer_for(braze_connection), token, force=True)

    state = MemberSyncState.objects.get(pk=member.pk)
    assert round_.stop is not None and round_.stop.reason == "rate limited" and round_.stop.wait > 0
    assert state.status == SyncStatus.PENDING and state.attempts == 0 and state.claim_token is None
    assert Connection.objects.get(pk=braze_connection.pk).paused_until > timezone.now()
    assert SyncRequest.objects.filter(outcome="rate_limited", http_status=429).exists()


def test_given_braze_answers_503_then_the_member_is_retried_later_with_backoff(braze_connection, sandbox):
    member = make_member("m-503")
    token = claim_everyone([member])
    sandbox.set_faults(fail_next=1)

    round_ = delivery.deliver_claim(deliverer_for(braze_connection), token, force=True)

    state = MemberSyncState.objects.get(pk=member.pk)
    assert round_.stop is not None and round_.stop.reason == "Braze unavailable"
    assert state.status == SyncStatus.PENDING and state.attempts == 1 and state.claim_token is None
    assert state.next_attempt_at > timezone.now()
    assert state.last_error_kind == "server_error"
    failed = SyncRequest.objects.get(outcome="server_error", http_status=503)
    assert Connection.objects.get(pk=braze_connection.pk).paused_until is not None
    # The member's page lists the request that failed for it.
    assert list(failed.members.values_list("member_id", "error")) == [(member.pk, f"Retrying: {failed.message}")]


def test_given_a_refused_key_then_the_connection_needs_attention_and_the_member_waits(braze_connection, sandbox):
    member = make_member("m-401")
    token = claim_everyone([member])
    sandbox.set_keys(["another-key-entirely-000000"])

    round_ = delivery.deliver_claim(deliverer_for(braze_connection), token, force=True)

    connection = Connection.objects.get(pk=braze_connection.pk)
    state = MemberSyncState.objects.get(pk=member.pk)
    assert round_.stop is not None and round_.stop.reason == "connection needs attention"
    assert connection.status == ConnectionStatus.NEEDS_ATTENTION
    assert "Braze does not accept this API key" in connection.last_message
    assert state.status == SyncStatus.PENDING and state.attempts == 0 and state.claim_token is None


def test_given_braze_refuses_one_object_then_only_that_member_is_marked_failed_with_brazes_words(
        braze_connection, sandbox):
    from braze_integration.models import OutboxItem

    with transaction.atomic():
        good = make_member("good-1")
        bad = make_member("bad-1")
        # Our builder passes ad-hoc attributes through; Braze refuses a nested key with a '.'.
        services.outbox_enqueue(member_id=bad.pk, kind="attributes", payload={"attributes": {"prefs": {"a.b": 1}}})

    assert sandbox.user("good-1")["attributes"]["loyalty_first_name"] == "Ada"
    assert MemberSyncState.objects.get(pk=good.pk).status == SyncStatus.SYNCED
    bad_state = MemberSyncState.objects.get(pk=bad.pk)
    assert bad_state.status == SyncStatus.FAILED
    assert bad_state.last_error.startswith("Braze refused the attributes:")
    assert OutboxItem.objects.get(member=bad).status == "failed"
    request = SyncRequest.objects.get(outcome="partial")
    assert request.errors and request.errors[0]["input_array"] == "attributes"


def test_every_request_is_logged_with_brazes_answer(braze_connection, sandbox):
    make_member()

    request = SyncRequest.objects.get()
    assert request.outcome == "success"
    assert request.http_status == 201
    assert request.attributes_count == 1
    assert request.members.get().member.member_id == "m-1"


def test_given_braze_refuses_the_request_as_too_big_then_it_is_split_until_everything_goes_through(
        braze_connection, settings):
    """An account on a smaller object limit answers 400 "Max Input Length Exceeded" for our batches:
    the batch is halved until Braze takes it, and nothing is lost."""
    from braze_integration.sandbox import SandboxConfig, SandboxServer
    from tests.conftest import SANDBOX_KEY

    with SandboxServer(SandboxConfig(api_keys={SANDBOX_KEY}, max_objects=20)) as small:
        settings.BRAZE_LOCAL_ENDPOINTS = [*settings.BRAZE_LOCAL_ENDPOINTS, small.url]
        braze_connection.instance_url = small.url
        braze_connection.save()
        with transaction.atomic():
            for index in range(60):
                make_member(f"split-{index:02d}")

        assert len(small.store.profile_keys()) == 60
        assert SyncRequest.objects.filter(outcome="rejected", message="Max Input Length Exceeded").exists()
        assert not MemberSyncState.objects.exclude(status=SyncStatus.SYNCED).exists()


def test_given_an_unexpected_error_mid_batch_then_the_members_are_given_back_at_once(braze_connection, monkeypatch):
    from braze_integration import delivery

    member = make_member("boom")
    MemberSyncState.objects.filter(pk=member.pk).update(status=SyncStatus.PENDING)  # a change waiting

    def explode(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(delivery.Deliverer, "build", explode)
    with pytest.raises(RuntimeError):
        services.sync_flush()

    state = MemberSyncState.objects.get(pk=member.pk)
    assert state.claim_token is None and state.claimed_until is None
    assert state.status == SyncStatus.PENDING


def test_only_a_request_of_mapped_attributes_alone_commits_without_waiting_for_the_disk(braze_connection, sandbox,
                                                                                       monkeypatch):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from braze_integration import ratelimit
    from braze_integration.models import OutboxItem

    # The rate limiter's counter has lazy commits of its own (tests/braze/test_ratelimit.py): out of the way.
    monkeypatch.setattr(ratelimit, "acquire", lambda connection, **kwargs: 0.0)

    plain, with_event = make_member("m-plain"), make_member("m-event")
    OutboxItem.objects.create(member=with_event, kind="event", payload={"name": "x", "time": "2024-01-01T00:00:00Z"})
    plain_claim = claim_everyone([plain])  # a claim need not wait for the disk either (queue.claim): not counted
    with CaptureQueriesContext(connection) as plain_queries:
        deliverer_for(braze_connection).deliver(plain_claim, force=True)
    event_claim = claim_everyone([with_event])
    with CaptureQueriesContext(connection) as event_queries:
        deliverer_for(braze_connection).deliver(event_claim, force=True)

    def lazy(queries):
        return [q for q in queries.captured_queries if "synchronous_commit" in q["sql"]]

    last = SyncRequest.objects.latest("pk")
    assert (last.outcome, last.events_count) == ("success", 1)
    assert OutboxItem.objects.get(member=with_event).status == "sent"
    # PostgreSQL: SET LOCAL for the attributes-only request; SQLite's WAL mode needs nothing.
    assert len(lazy(plain_queries)) == (1 if connection.vendor == "postgresql" else 0)
    assert lazy(event_queries) == []


def test_inside_a_callers_transaction_the_commit_still_waits_for_the_disk(braze_connection, sandbox):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    member = make_member("m-nested")
    token = claim_everyone([member])
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        deliverer_for(braze_connection).deliver(token, force=True)

    assert MemberSyncState.objects.get(pk=member.pk).status == SyncStatus.SYNCED
    assert not [q for q in queries.captured_queries if "synchronous_commit" in q["sql"]]


def test_when_a_claims_third_request_is_rate_limited_the_two_before_stay_recorded(braze_connection, sandbox,
                                                                                   monkeypatch):
    """Nothing Braze accepted is left unrecorded when sending stops; the rest is given back."""
    braze_connection.batch_size = 2
    members = [make_member(f"m-stop-{i}") for i in range(5)]
    token = claim_everyone(members)
    before = SyncRequest.objects.order_by("pk").last()
    post, calls = delivery._post, []

    def third_is_rate_limited(client, data):
        calls.append(1)
        if len(calls) == 3:
            return errors.BrazeRateLimited("Rate limit exceeded", retry_after=30, status=429, body={}, duration_ms=1)
        return post(client, data)

    monkeypatch.setattr(delivery, "_post", third_is_rate_limited)

    with pytest.raises(delivery.SyncStopped):
        deliverer_for(braze_connection).deliver(token, force=True)

    states = {s.member.member_id: s for s in MemberSyncState.objects.select_related("member")}
    assert sorted(k for k, s in states.items() if s.status == SyncStatus.SYNCED) == [f"m-stop-{i}" for i in range(4)]
    assert states["m-stop-4"].status == SyncStatus.PENDING and states["m-stop-4"].claim_token is None
    assert SyncRequest.objects.filter(outcome="success", pk__gt=before.pk if before else 0).count() == 2


def _deliver_due(connection, member) -> None:
    """Claim the member now (its retry's backoff and the connection's pause skipped) and deliver it."""
    MemberSyncState.objects.filter(pk=member.pk).update(next_attempt_at=None)
    Connection.objects.update(paused_until=None)
    token, claimed = queue.claim(limit=1, member_ids=[member.pk])
    assert claimed == [member.pk]
    delivery.deliver_claim(deliverer_for(connection), token)


@pytest.mark.parametrize(("field", "remote", "changed_to", "then_to", "braze_ends_with"), [
    ("first_name", "loyalty_first_name", "Temporary", "Ada", "Ada"),  # back to what Braze last accepted
    ("birth_date", "loyalty_birthday", dt.date(2001, 2, 3), None, None),  # never accepted, emptied: a null
])
def test_a_value_whose_answer_was_lost_is_sent_again_whatever_it_became(braze_connection, sandbox, monkeypatch,
                                                                         field, remote, changed_to, then_to,
                                                                         braze_ends_with):
    """Given a synced member, then changed, and the request carrying the change reached Braze but its answer
    was lost, when the member changes again before the retry (back to the value Braze last accepted, or
    emptied), then the retry carries that value: Braze holds the lost request's value, whatever the last
    accepted one was."""
    member = make_member("m-lost", first_name="Ada", birth_date=None)  # synced at once (django-q2's sync mode)
    assert sandbox.user("m-lost")["attributes"]["loyalty_first_name"] == "Ada"
    monkeypatch.setattr(delivery, "backoff_seconds", lambda attempts: 60.0)  # the retry waits for this test
    sandbox.set_faults(ack_lost_next=1)
    setattr(member, field, changed_to)
    member.save()
    assert sandbox.user("m-lost")["attributes"][remote] == str(changed_to)  # Braze has it, unanswered
    assert remote in MemberSyncState.objects.get(pk=member.pk).maybe_sent

    setattr(member, field, then_to)
    member.save()
    _deliver_due(braze_connection, member)

    assert sandbox.user("m-lost")["attributes"].get(remote) == braze_ends_with
    state = MemberSyncState.objects.get(pk=member.pk)
    assert state.status == SyncStatus.SYNCED and state.maybe_sent is None


def test_a_member_whose_worker_stopped_while_holding_it_is_sent_whole_on_its_next_claim(braze_connection, sandbox):
    """Given a synced member claimed by a worker that stopped (its lease ran out, its token still on the row),
    when the member is claimed again, then every mapped value is sent, though none changed: the stopped
    worker's request may have reached Braze with values it never recorded."""
    member = make_member("m-stopped")  # synced at once (django-q2's sync mode)
    requests_before = sandbox.stats()["requests"]
    claim_everyone([member])
    MemberSyncState.objects.filter(pk=member.pk).update(claimed_until=timezone.now() - timezone.timedelta(seconds=1))

    _deliver_due(braze_connection, member)

    assert sandbox.stats()["requests"] == requests_before + 1
    state = MemberSyncState.objects.get(pk=member.pk)
    assert state.status == SyncStatus.SYNCED and state.maybe_sent is None and state.claim_token is None


def test_a_consent_given_in_a_lost_request_then_cleared_is_withdrawn_in_braze(braze_connection, sandbox, monkeypatch):
    """Given a member whose e-mail consent Braze was never sent, when a request carrying 'opted_in' reaches
    Braze but its answer is lost, and the consent is cleared before the retry, then Braze gets
    'unsubscribed' (a cleared consent was left out as never given, and Braze kept 'opted_in')."""
    from braze_integration.models import FieldMapping

    FieldMapping.objects.create(connection=braze_connection, loyalty_field="consent_email",
                                remote_field="email_subscribe", position=99)
    services.sync_config_invalidate()
    member = make_member("m-consent")  # synced at once, no consent given (django-q2's sync mode)
    assert "email_subscribe" not in sandbox.user("m-consent")["attributes"]
    monkeypatch.setattr(delivery, "backoff_seconds", lambda attempts: 60.0)  # the retry waits for this test
    sandbox.set_faults(ack_lost_next=1)
    member.consent_email = "opted_in"
    member.save()
    assert sandbox.user("m-consent")["attributes"]["email_subscribe"] == "opted_in"  # Braze has it, unanswered

    member.consent_email = ""
    member.save()
    _deliver_due(braze_connection, member)

    assert sandbox.user("m-consent")["attributes"]["email_subscribe"] == "unsubscribed"
