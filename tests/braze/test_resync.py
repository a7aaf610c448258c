"""`braze_resync`: selections, dry-run figures, resume after an interruption, over real HTTP."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from braze_integration import resync
from braze_integration.models import MemberSyncState, ResyncRun, ResyncStatus
from loyaltysync.models import Member, Tier


@pytest.fixture
def members(braze_connection):
    gold = Tier.objects.create(name="Gold", points_threshold=0)
    Member.objects.bulk_create(
        Member(member_id=f"r-{i:04d}", first_name=f"N{i}", points_spendable=i, tier=gold if i % 2 else None)
        for i in range(300))
    return Member.objects.order_by("pk")


def run(*args) -> str:
    out = StringIO()
    call_command("braze_resync", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def failing_on_call(number: int, real, error: BaseException | Callable[[], object]):
    """``real``, except that its ``number``-th call raises ``error`` (or calls it: a signal, say) first."""
    calls = 0

    def wrapper(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == number:
            if isinstance(error, BaseException):
                raise error
            error()
        return real(*args, **kwargs)

    return wrapper


def test_given_300_members_when_resyncing_all_then_every_profile_is_in_the_sandbox(members, sandbox):
    output = run("--all")

    assert sandbox.stats()["users"] == 300
    assert sandbox.user("r-0007")["attributes"]["loyalty_points"] == 7
    assert "sent 300" in output and "4 requests" in output
    assert MemberSyncState.objects.filter(status="synced").count() == 300


def test_given_a_finished_resync_when_run_again_then_unchanged_members_are_not_sent_unless_forced(members, sandbox):
    run("--all")
    sandbox.reset()

    assert "unchanged 300" in run("--all")
    assert sandbox.stats()["requests"] == 0
    assert "sent 300" in run("--all", "--force")
    assert sandbox.stats()["users"] == 300


def test_dry_run_prints_the_figures_and_sends_nothing(members, sandbox):
    output = run("--all", "--dry-run", "--batch-size", "50")

    assert "300 members selected; 300 would be sent" in output
    assert "6 requests" in output
    assert '"external_id": "r-0000"' in output
    assert sandbox.stats()["requests"] == 0


def test_since_selects_only_members_changed_after_the_date(members, sandbox):
    Member.objects.update(updated_at=timezone.now() - dt.timedelta(days=10))
    Member.objects.filter(member_id__in=["r-0001", "r-0002"]).update(updated_at=timezone.now())

    run("--since", (timezone.now() - dt.timedelta(days=1)).date().isoformat())

    assert sorted(sandbox.session.get(f"{sandbox.url}/sandbox/users").json()["external_ids"]) == ["r-0001", "r-0002"]


def test_fields_sends_only_the_named_attributes(members, sandbox):
    run("--all", "--fields", "loyalty_points")

    assert sandbox.user("r-0003")["attributes"] == {"loyalty_points": 3}


def test_unknown_field_is_refused_with_its_name(members):
    with pytest.raises(CommandError, match="pointz"):
        run("--all", "--fields", "pointz")


def test_given_an_interrupted_resync_when_resumed_then_it_goes_on_from_where_it_stopped(members, sandbox):
    selection = resync.Selection(all=True)
    started = resync.resync_start(selection=selection, batch_size=25)  # chunks of 200 members

    def interrupt(done, current):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        resync.resync_execute(run=started, progress=interrupt)
    started.refresh_from_db()
    assert started.status == ResyncStatus.INTERRUPTED
    assert 0 < started.members_done < 300
    first_part = sandbox.stats()["users"]
    requests_before = sandbox.stats()["requests"]

    output = run("--resume")

    assert sandbox.stats()["users"] == 300
    assert first_part == started.members_done
    # Nothing sent twice: the resumed run only sent the members after the cursor.
    assert sandbox.stats()["requests"] - requests_before == -(-(300 - first_part) // 25)
    assert ResyncRun.objects.get().status == ResyncStatus.FINISHED
    assert "done: 300 members" in output


def test_nothing_selected_is_a_clear_error(braze_connection):
    with pytest.raises(CommandError, match="--all"):
        run()


def test_given_braze_rate_limits_hard_when_force_resyncing_then_each_accepted_batch_is_sent_once_and_it_finishes(
        members, sandbox):
    # 300 members are 4 requests of 75. One request per 2 s window: sent back to back, at least one of them
    # lands in a window that already had one and gets 429 (3/2s, the reported setting, let a fast machine
    # slip all 4 past a window boundary now and then).
    sandbox.set_faults(rate_limit="1/2s")

    output = run("--all", "--force")

    stats = sandbox.stats()
    assert stats["rate_limited"] >= 1  # the scenario did hit Braze's limit
    assert sum(stats["objects"].values()) == 300  # no batch Braze accepted was sent again
    assert stats["users"] == 300
    assert "sent 300" in output
    assert ResyncRun.objects.get().status == ResyncStatus.FINISHED


@pytest.mark.parametrize("since, problem", [
    ("notadate", "is not a date (YYYY-MM-DD) or an ISO date-time"),
    ("2026-13-45", "is no date or time that exists (month must be in 1..12)"),
    ("2026-02-30", "is no date or time that exists (day is out of range for month)"),
    ("2026-01-01T00:00:00+99:00", "is no date or time that exists"),
])
def test_a_since_that_is_no_date_is_refused_naming_it(members, sandbox, since, problem):
    """Dates written right that do not exist ended in a traceback."""
    with pytest.raises(CommandError, match=r"--since: '.*' " + problem.replace("(", r"\(").replace(")", r"\)")):
        run("--since", since)
    assert sandbox.stats()["requests"] == 0 and not ResyncRun.objects.exists()


@pytest.mark.parametrize("args, named", [(("--tier", "Golden"), "no tier named 'Golden'"),
                                         (("--member", "r-0001", "nobody"), "no member with id 'nobody'")])
def test_a_selection_naming_nothing_that_exists_fails(members, sandbox, args, named):
    with pytest.raises(CommandError, match=named):
        run(*args)
    with pytest.raises(CommandError, match=named):
        run(*args, "--dry-run")
    assert sandbox.stats()["requests"] == 0 and not ResyncRun.objects.exists()


def forced_run_stopped_by_sigterm(sandbox, monkeypatch) -> None:
    """Every member synced, the sandbox emptied, then ``--all --force`` stopped by an interrupt while its main
    thread waits for the fourth answer of its first chunk's eight requests (25 members each): where the
    main thread spends most of a resync, so where a Ctrl-C or SIGTERM lands. Sending works again after."""
    run("--all")
    sandbox.reset()
    started = resync.resync_start(selection=resync.Selection(all=True), force=True, batch_size=25)
    with interrupted_at_the_main_threads_wait(4), pytest.raises(KeyboardInterrupt):
        resync.resync_execute(run=started)


@contextlib.contextmanager
def interrupted_at_the_main_threads_wait(number: int):
    """Ctrl-C raised where the main thread waits for an answer (``Future.result``), the ``number``-th time."""
    import threading
    from concurrent.futures import Future

    result, waits = Future.result, []

    def interrupted(self, timeout=None):
        if threading.current_thread() is threading.main_thread():
            waits.append(1)
            if len(waits) == number:
                raise KeyboardInterrupt
        return result(self, timeout)

    Future.result = interrupted
    try:
        yield
    finally:
        Future.result = result


def test_a_forced_resync_resumed_after_an_interrupt_does_not_send_again_what_braze_accepted(members, sandbox,
                                                                                           monkeypatch):
    """--resume goes on from the last chunk the run finished; a forced run sent part of the next one."""
    from braze_integration.models import SyncRequest

    forced_run_stopped_by_sigterm(sandbox, monkeypatch)
    interrupted = ResyncRun.objects.get(status=ResyncStatus.INTERRUPTED)
    accepted = SyncRequest.objects.filter(outcome="success", created_at__gte=interrupted.created_at).count()
    assert interrupted.cursor == 0 and accepted >= 4  # Braze has part of a chunk the run did not finish
    assert sum(sandbox.stats()["objects"].values()) == accepted * 25  # every answer on the wire recorded

    output = run("--resume")

    assert "done: 300 members" in output
    assert sum(sandbox.stats()["objects"].values()) == 300  # each member once: none sent again by the resume
    assert sandbox.stats()["users"] == 300
    # The totals count what went out: the members the stopped chunk sent as sent (not "unchanged" when the
    # resume passed them), its requests too.
    finished = ResyncRun.objects.get(pk=interrupted.pk)
    assert (finished.members_sent, finished.members_unchanged) == (300, 0)
    assert finished.requests == sandbox.stats()["requests"]


def test_a_forced_resync_of_some_fields_does_not_count_as_a_full_forced_send(members, sandbox, monkeypatch):
    """A member sent only its first name by a forced --fields run while a forced --all run was stopped
    still gets every attribute from that run's --resume."""
    forced_run_stopped_by_sigterm(sandbox, monkeypatch)
    run("--member", "r-0250", "--fields", "first_name", "--force")
    assert set(sandbox.user("r-0250")["attributes"]) == {"loyalty_first_name"}

    run("--resume")

    assert sandbox.user("r-0250")["attributes"]["loyalty_points"] == 250


def test_an_interrupt_during_a_request_releases_the_claims_so_resume_works_at_once(members, sandbox, monkeypatch):
    from braze_integration import delivery

    post = delivery._post
    # Ctrl-C while the second request is on its way
    monkeypatch.setattr(delivery, "_post", failing_on_call(2, post, KeyboardInterrupt()))
    started = resync.resync_start(selection=resync.Selection(all=True), batch_size=25)
    with pytest.raises(KeyboardInterrupt):
        resync.resync_execute(run=started)

    # Then no member is left claimed (the 120 s lease is not needed)
    assert not MemberSyncState.objects.filter(claim_token__isnull=False).exists()
    monkeypatch.setattr(delivery, "_post", post)
    output = run("--resume")
    assert "done: 300 members" in output
    assert sandbox.stats()["users"] == 300


def test_given_a_full_resync_then_one_row_per_request_and_the_member_page_still_names_its_request(members, sandbox):
    from braze_integration.admin_member import braze_requests
    from braze_integration.models import SyncRequest, SyncRequestMember

    run("--all")

    requests = list(SyncRequest.objects.filter(trigger="resync"))
    assert len(requests) == 4 and not SyncRequestMember.objects.exists()  # nothing per member was refused
    member = members[7]
    last = MemberSyncState.objects.get(pk=member.pk).last_request_id
    assert last in {r.pk for r in requests}
    assert f"#{last}" in braze_requests(member)


def test_given_a_resync_of_chosen_members_then_each_keeps_its_request_row(members, sandbox):
    from braze_integration.models import SyncRequestMember

    run("--member", "r-0001", "r-0002")

    assert set(SyncRequestMember.objects.values_list("member__member_id", flat=True)) == {"r-0001", "r-0002"}


def test_given_members_claimed_by_a_killed_worker_when_resyncing_then_it_waits_out_their_lease_and_sends_them(
        members, sandbox, settings):
    """A worker SIGKILLed mid-send leaves its claim until the lease runs out; a resync walking into those
    members waits that long (not a fixed number of tries) and then sends them."""
    from braze_integration import queue

    settings.BRAZE_CLAIM_LEASE_SECONDS = 3
    MemberSyncState.objects.all().delete()
    queue.states_ensure(list(Member.objects.order_by("pk").values_list("pk", flat=True)[:10]))
    _dead_token, claimed = queue.claim(limit=10)  # the killed worker's claim: nobody releases it
    assert len(claimed) == 10
    run = resync.resync_start(selection=resync.Selection(all=True))

    resync.resync_execute(run=run, max_stalls=1)  # failed tries do not count while the members are held

    run.refresh_from_db()
    assert run.status == ResyncStatus.FINISHED and run.members_sent == Member.objects.count()
    assert sandbox.stats()["users"] == Member.objects.count()


def test_all_with_a_narrower_selection_is_refused_and_nothing_is_sent(members, sandbox):
    with pytest.raises(CommandError, match=r"--all selects every member and cannot be narrowed by --member"):
        run("--all", "--member", "r-0001")

    assert not ResyncRun.objects.exists() and sandbox.stats()["users"] == 0


@pytest.mark.parametrize("how", [["--in-process"], []])
def test_a_member_erased_after_the_resync_read_its_chunk_is_left_out_and_the_rest_is_sent(
        members, sandbox, monkeypatch, how, settings):
    """The erasure commits between the resync's read of the chunk's keys and its new state rows
    (on PostgreSQL the state insert used to wait for it and then fail on the member's foreign key)."""
    from braze_integration import queue
    from loyaltysync.services import member_erase

    settings.BRAZE_RESYNC_PICKUP_SECONDS = 0  # no worker runs here: the command sends the parts itself
    victim = members[5]
    real = queue.states_ensure

    def erase_first(member_ids, **kwargs):
        if victim.pk in member_ids and Member.objects.filter(pk=victim.pk).exists():
            member_erase(member_id=victim.member_id, erased_by="test", source="admin")
        return real(member_ids, **kwargs)

    monkeypatch.setattr(queue, "states_ensure", erase_first)
    output = run("--all", *how)

    finished = ResyncRun.objects.latest("pk")
    assert finished.status == ResyncStatus.FINISHED, finished.message
    assert "sent 299" in output
    assert sandbox.user(victim.member_id) is None
    assert sandbox.user(members[6].member_id) is not None
    assert MemberSyncState.objects.filter(status="synced").count() == 299


def test_a_proxy_setting_the_client_cannot_use_stops_the_resync_with_a_message_saying_so(members, sandbox,
                                                                                         monkeypatch):
    from braze_integration import services

    monkeypatch.setattr(services, "_pools", {})  # the environment is read when a process first talks to Braze
    with monkeypatch.context() as environment:  # (the test's own sandbox client reads it too)
        for name in ("NO_PROXY", "no_proxy", "http_proxy"):
            environment.delenv(name, raising=False)
        environment.setenv("HTTP_PROXY", "socks5://proxy.internal:1080")

        with pytest.raises(CommandError, match=r"socks5://.*use an http:// or https:// proxy"):
            run("--all")
    assert sandbox.stats()["requests"] == 0


def test_the_next_chunk_is_claimed_and_built_while_the_answers_of_the_one_before_are_on_their_way(
        members, sandbox, monkeypatch, settings):
    """A worker does not wait idle for Braze's last answers of a chunk: by then it has taken the next."""
    from braze_integration import queue

    settings.BRAZE_REQUESTS_IN_FLIGHT = 4
    events: list[str] = []
    ensure, finish = queue.states_ensure, queue.finish_synced

    def noting_ensure(member_ids, **kwargs):
        events.append("chunk")
        return ensure(member_ids, **kwargs)

    def noting_finish(token, **kwargs):
        events.append("answer")
        return finish(token, **kwargs)

    monkeypatch.setattr(queue, "states_ensure", noting_ensure)
    monkeypatch.setattr(queue, "finish_synced", noting_finish)
    started = resync.resync_start(selection=resync.Selection(all=True), batch_size=25)  # chunks of 200: 8 requests

    resync.resync_execute(run=started)

    second = events.index("chunk", 1)
    # Between 4 (BRAZE_REQUESTS_IN_FLIGHT) and 7 of the first chunk's 8 answers were in (those that came
    # early are recorded at once): the last one at least was still to come.
    assert 4 <= events[:second].count("answer") < 8
    assert events.count("answer") == 12 and events.count("chunk") == 2
    assert sandbox.stats()["users"] == 300
    assert MemberSyncState.objects.filter(status="synced").count() == 300


def test_when_the_walk_stops_after_a_chunk_the_chunk_taken_ahead_goes_back_as_it_was(members, sandbox):
    """The rows added for the next chunk are removed again (no member the run did not send becomes
    pending for the flush workers); a row that was there before stays, released."""
    from braze_integration import queue

    changed = members[250]  # in the second chunk
    queue.mark_pending([changed.pk])
    started = resync.resync_start(selection=resync.Selection(all=True), batch_size=25)
    sender = resync.resync_sender(started)

    walked = resync.resync_walk(sender, after=0, last=None, on_chunk=lambda ids, report: False)

    assert walked is False
    assert sandbox.stats()["users"] == 200
    assert MemberSyncState.objects.count() == 201
    assert not MemberSyncState.objects.filter(claim_token__isnull=False).exists()
    assert MemberSyncState.objects.get(pk=changed.pk).status == "pending"


def test_an_error_taking_the_next_chunk_is_raised_after_the_answers_of_the_one_before_are_recorded(
        members, sandbox, monkeypatch):
    from django.db import OperationalError

    from braze_integration import queue

    monkeypatch.setattr(queue, "states_ensure",
                        failing_on_call(2, queue.states_ensure, OperationalError("database is locked")))
    started = resync.resync_start(selection=resync.Selection(all=True), batch_size=25)

    with pytest.raises(OperationalError):
        resync.resync_execute(run=started)

    started.refresh_from_db()
    assert started.status == ResyncStatus.INTERRUPTED and started.cursor == members[199].pk
    assert MemberSyncState.objects.filter(status="synced").count() == 200 == sandbox.stats()["users"]
    assert not MemberSyncState.objects.filter(claim_token__isnull=False).exists()


def test_an_interrupt_while_taking_the_next_chunk_leaves_no_member_claimed(members, sandbox, monkeypatch):
    from braze_integration import queue

    claim = queue.claim
    # The second claim is the next chunk's: its rows were just added, born claimed.
    monkeypatch.setattr(queue, "claim", failing_on_call(2, claim, KeyboardInterrupt()))
    started = resync.resync_start(selection=resync.Selection(all=True), batch_size=25)
    with pytest.raises(KeyboardInterrupt):
        resync.resync_execute(run=started)

    assert not MemberSyncState.objects.filter(claim_token__isnull=False).exists()
    monkeypatch.setattr(queue, "claim", claim)
    assert "done: 300 members" in run("--resume")


def test_when_giving_the_next_chunk_back_fails_too_the_walks_own_error_is_raised(members, sandbox, monkeypatch):
    from django.db import OperationalError

    from braze_integration import queue

    def broken(token, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    def failing_record(ids, report):
        raise RuntimeError("the run's row could not be written")

    monkeypatch.setattr(queue, "release_unsent", broken)
    started = resync.resync_start(selection=resync.Selection(all=True), batch_size=25)

    with pytest.raises(RuntimeError, match="the run's row"):
        resync.resync_walk(resync.resync_sender(started), after=0, last=None, on_chunk=failing_record)


def test_an_interrupt_while_requests_are_on_the_wire_records_their_answers_so_resume_sends_them_once(
        members, sandbox, monkeypatch, settings):
    """Ctrl-C with two requests on their way: Braze gets them anyway, so their answers are waited for and
    recorded; the resumed run sends only the rest."""
    from braze_integration import delivery

    settings.BRAZE_REQUESTS_IN_FLIGHT = 4
    prepare = delivery.Deliverer._prepare
    monkeypatch.setattr(delivery.Deliverer, "_prepare", failing_on_call(3, prepare, KeyboardInterrupt()))
    started = resync.resync_start(selection=resync.Selection(all=True), batch_size=25)
    with pytest.raises(KeyboardInterrupt):
        resync.resync_execute(run=started)

    assert sandbox.stats()["users"] == 50
    assert MemberSyncState.objects.filter(status="synced").count() == 50
    assert not MemberSyncState.objects.exclude(status="synced").exists()  # nor rows of members not sent
    assert not MemberSyncState.objects.filter(claim_token__isnull=False).exists()
    monkeypatch.setattr(delivery.Deliverer, "_prepare", prepare)
    assert "done: 300 members" in run("--resume")
    assert sandbox.stats()["requests"] == 2 + 10  # 50 members, then the other 250: none twice


def test_an_interrupt_while_the_next_chunk_is_built_leaves_no_pending_row_for_members_not_sent(
        members, sandbox, monkeypatch):
    from braze_integration import delivery

    # The second build is the chunk taken ahead's: its rows were added, born claimed.
    monkeypatch.setattr(delivery.Deliverer, "build", failing_on_call(2, delivery.Deliverer.build, KeyboardInterrupt()))
    started = resync.resync_start(selection=resync.Selection(all=True), batch_size=25)
    with pytest.raises(KeyboardInterrupt):
        resync.resync_execute(run=started)

    synced = MemberSyncState.objects.filter(status="synced").count()
    assert synced == sandbox.stats()["users"] == 200  # the first chunk's answers were all recorded
    assert MemberSyncState.objects.count() == synced
    assert not MemberSyncState.objects.filter(claim_token__isnull=False).exists()


def test_sigterm_stops_an_in_process_resync_as_ctrl_c_does(members, sandbox, monkeypatch):
    """systemd or a container's stop: the run is marked interrupted, the claims are given back, and
    --resume finishes at once."""
    import os
    import signal

    from braze_integration import delivery

    post = delivery._post
    monkeypatch.setattr(delivery, "_post", failing_on_call(2, post, lambda: os.kill(os.getpid(), signal.SIGTERM)))
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as exited:
        run("--all", "--in-process", "--batch-size", "25")

    assert exited.value.code == 130
    assert signal.getsignal(signal.SIGTERM) is before
    interrupted = ResyncRun.objects.get()
    assert interrupted.status == ResyncStatus.INTERRUPTED
    assert not MemberSyncState.objects.filter(claim_token__isnull=False).exists()
    monkeypatch.setattr(delivery, "_post", post)
    assert "done: 300 members" in run("--resume")


@pytest.mark.parametrize("signum", ["SIGTERM", "SIGINT"])
def test_a_signal_while_an_answer_is_recorded_stops_the_resync_after_the_record(members, sandbox, monkeypatch,
                                                                                 signum):
    """Given a resync whose second answer is being recorded, when SIGTERM or Ctrl-C comes right then, the
    record is written before the run stops: Braze has those members and the database says so, so
    --resume sends no member twice. (Raised where the signal came, the record's transaction was rolled
    back and the resume sent those 25 members again.)"""
    import os
    import signal

    from braze_integration import queue

    kill = lambda: os.kill(os.getpid(), getattr(signal, signum))  # noqa: E731
    monkeypatch.setattr(queue, "finish_synced", failing_on_call(2, queue.finish_synced, kill))
    with pytest.raises(SystemExit) as exited:
        run("--all", "--in-process", "--batch-size", "25")

    assert exited.value.code == 130
    assert ResyncRun.objects.get().status == ResyncStatus.INTERRUPTED
    sent = sandbox.stats()["users"]
    assert sent >= 50 and MemberSyncState.objects.filter(status="synced").count() == sent
    assert not MemberSyncState.objects.filter(claim_token__isnull=False).exists()
    assert "done: 300 members" in run("--resume")
    assert sum(sandbox.stats()["objects"].values()) == 300  # each member once
    finished = ResyncRun.objects.get()
    assert (finished.members_sent, finished.requests) == (300, sandbox.stats()["requests"])


def test_an_interrupt_while_waiting_for_an_answer_records_that_answer_too(members, sandbox, monkeypatch, settings):
    """The main thread spends most of a resync waiting for the oldest answer: a Ctrl-C lands there.
    That request reached Braze as well; its answer is recorded with the others on the wire."""
    settings.BRAZE_REQUESTS_IN_FLIGHT = 4
    started = resync.resync_start(selection=resync.Selection(all=True), batch_size=25)
    with interrupted_at_the_main_threads_wait(3), pytest.raises(KeyboardInterrupt):
        resync.resync_execute(run=started)

    sent = sandbox.stats()["users"]
    assert sent >= 75 and MemberSyncState.objects.filter(status="synced").count() == sent
    assert not MemberSyncState.objects.exclude(status="synced").exists()
    assert "done: 300 members" in run("--resume")
    assert sandbox.stats()["requests"] == 300 // 25  # each member once


def test_a_member_braze_keeps_failing_is_dead_lettered_and_the_resync_finishes_without_it(members, sandbox,
                                                                                         braze_connection, monkeypatch):
    """Given one member Braze answers 500 for every time, when a resync sends it with its neighbours, then
    the neighbours go through, the member is dead-lettered after the connection's attempts, and the run
    finishes, counting it failed (it was sent again every 30 s until the run gave up after 20 stalls)."""
    from braze_integration import delivery

    monkeypatch.setattr(delivery, "backoff_seconds", lambda attempts: 0.1)
    braze_connection.max_attempts = 2
    braze_connection.save()
    sandbox.set_faults(fail_external_ids=["r-0007"])

    output = run("--member", "r-0006", "r-0007", "r-0008", "--in-process")

    assert "done: 3 members" in output and "sent 2" in output and "failed 1" in output
    assert MemberSyncState.objects.get(member__member_id="r-0007").status == "dead"
    assert sandbox.user("r-0006") is not None and sandbox.user("r-0008") is not None
    # The shared request, the halves that isolate it, then its own tries: not a try every few seconds until the
    # run gives up.
    assert sandbox.stats()["requests_by_status"].get("500", 0) <= 6


def test_resume_refuses_a_run_another_process_is_sending_and_takes_one_whose_process_died(members, sandbox):
    """Given a run marked running whose process saved its progress a moment ago, when --resume is asked, then
    it is refused, naming the run (two processes sending one run each counted its members, and one could
    wait for ever); once that process has saved nothing for a claim lease (killed), --resume goes on."""
    from django.core.management.base import CommandError

    started = resync.resync_start(selection=resync.Selection(all=True))
    ResyncRun.objects.filter(pk=started.pk).update(status=ResyncStatus.RUNNING,
                                                    driven_until=timezone.now() + timezone.timedelta(seconds=60))

    with pytest.raises(CommandError, match=f"Resync #{started.pk} is running in another process"):
        run("--resume")

    ResyncRun.objects.filter(pk=started.pk).update(driven_until=timezone.now() - timezone.timedelta(seconds=1))
    assert "done: 300 members" in run("--resume")
    assert ResyncRun.objects.get().driven_until is None
