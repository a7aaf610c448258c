"""The sync queue: members' sync-state rows, claims and leases, flush slots, and every raw SQL
statement the engine writes.

A save appends a *change* row (``changes_note``) and writes nothing else: no row a worker holds, so
a save never waits for a worker recording Braze's answer. Workers *fold* the changes into the
members' state rows (``changes_fold``) before they claim, as do the counts the admin and commands
show. A member is *pending* when its state row says so; a worker *claims* pending members by stamping
their rows with a token and a lease (at most one claim holds a member), and *finishes* the claim by
writing the state Braze's answer gave. A *flush slot* is a row a flush task holds while it works,
so a save queues a task only when a slot is free. Raw SQL is used where the ORM would cost a round
trip per row or too much Python on the save path; it lives here and nowhere else.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Collection, Iterable
from datetime import UTC, timedelta
from typing import Any

from django.conf import settings
from django.core import checks
from django.db import OperationalError, transaction
from django.db import connection as db_connection
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from loyaltysync.models import Member
from loyaltysync.on_commit import commit_without_waiting_for_disk, committed_without_waiting_for_disk
from loyaltysync.sql_lists import one_param, one_param_table

from . import payloads
from .models import (
    FlushSlot,
    MemberChange,
    MemberSyncState,
    OutboxItem,
    RequestOutcome,
    SyncRequest,
    SyncRequestMember,
    SyncStatus,
)

logger = logging.getLogger(__name__)

# A task renews its slot while it works; one that was killed frees it after this long.
SLOT_LEASE = timedelta(seconds=15)


def _q(name: str) -> str:
    return db_connection.ops.quote_name(name)


# --- marking members pending -----------------------------------------------------------------------

def _pending_upsert(table: str) -> str:
    """The ``ON CONFLICT`` clause that marks an existing state row pending: a member already pending
    gets a higher version (several changes before a send merge into one). A row inserted without
    ``dirty_since`` carries only a hold (``hold``), which is no change: it replaces the row's hold and
    leaves the rest as it is."""
    change = "EXCLUDED.dirty_since IS NOT NULL"
    return (f"ON CONFLICT (member_id) DO UPDATE SET "
            f"status = CASE WHEN {change} THEN 'pending' ELSE {table}.status END, "
            f"version = {table}.version + CASE WHEN {change} THEN 1 ELSE 0 END, "
            f"dirty_since = COALESCE({table}.dirty_since, EXCLUDED.dirty_since), "
            f"held_until = COALESCE(EXCLUDED.held_until, {table}.held_until), "
            f"attempts = CASE WHEN {table}.status = 'pending' OR NOT ({change}) THEN {table}.attempts ELSE 0 END")


def mark_pending(member_ids: list[int]) -> None:
    """Upsert the members' state rows as pending in the caller's transaction (a worker's own members,
    housekeeping). A save appends a change instead (``changes_note``)."""
    table = _q(MemberSyncState._meta.db_table)
    now = db_connection.ops.adapt_datetimefield_value(timezone.now())
    with db_connection.cursor() as cursor:
        for start in range(0, len(member_ids), 500):
            chunk = member_ids[start:start + 500]
            values = ", ".join(["(%s, 'pending', 1, 0, 0, 0, %s, '', '')"] * len(chunk))
            params: list[Any] = []
            for member_id in chunk:
                params += [member_id, now]
            cursor.execute(
                f"INSERT INTO {table} (member_id, status, version, synced_version, claimed_version, attempts, dirty_since, "
                f"last_error, last_error_kind) VALUES {values} {_pending_upsert(table)}",
                params,
            )


def changes_note(member_ids: list[int]) -> None:
    """Record that the members changed, in the caller's transaction: one INSERT of new rows, which
    waits for no lock a worker holds (a worker recording an answer holds the members' state rows).

    On every save of a mapped field: the connection is looked up once and the statement's text kept
    (the proxy's lookups and the quoting cost a fifth of the call, bench/README.md)."""
    conn = transaction.get_connection()
    now = conn.ops.adapt_datetimefield_value(timezone.now())
    with conn.cursor() as cursor:
        for start in range(0, len(member_ids), 500):
            chunk = member_ids[start:start + 500]
            params: list[Any] = []
            for member_id in chunk:
                params += [member_id, now]
            cursor.execute(_change_insert_sql(len(chunk)), params)


@functools.cache
def _change_insert_sql(rows: int) -> str:
    table = _q(MemberChange._meta.db_table)
    return f"INSERT INTO {table} (member_id, changed_at) VALUES " + ", ".join(["(%s, %s)"] * rows)


FOLD_BATCH = 20_000
FOLD_LOCK_WAIT_MS = 200  # well below PostgreSQL's deadlock_timeout (1 s by default)
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE when lock_timeout ran out


def changes_fold() -> int:
    """Fold the changes saved so far into the members' state rows (pending, at a higher version) and
    delete them, in one transaction; returns how many changes were folded. Members erased meanwhile
    are left out. Cheap when there is nothing to fold (one read, no write).

    On PostgreSQL two workers folding at once take disjoint changes (``SKIP LOCKED``) and lock the
    state rows in member order, so they cannot deadlock with each other. A fold waits for a worker
    recording an answer for a member it bumps, but at most ``FOLD_LOCK_WAIT_MS``: it then gives up
    (the changes stay for the next fold) long before PostgreSQL would look for a deadlock and
    perhaps abort the recording instead. The transaction need not wait for the disk: a crash loses
    the deletion and the upsert together, and the changes are folded again."""
    change_table = _q(MemberChange._meta.db_table)
    with db_connection.cursor() as cursor:
        cursor.execute(f"SELECT 1 FROM {change_table} LIMIT 1")
        if cursor.fetchone() is None:
            return 0
    table, member_table = _q(MemberSyncState._meta.db_table), _q(Member._meta.db_table)
    folded = 0
    while True:
        try:
            taken = _fold_batch(change_table, table, member_table)
        except OperationalError as err:
            if getattr(err.__cause__, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                raise
            logger.info("Folding saved changes waited too long for a worker's lock; the next fold takes them.")
            break
        folded += taken
        if taken < FOLD_BATCH:
            break
    return folded


def changes_fold_for_reading() -> int | None:
    """``changes_fold`` for readers (the admin, ``braze_status``, ``/metrics``, the demo), so members saved
    a moment ago count as pending with or without a worker; workers call ``changes_fold`` before they claim.

    Inside a caller's transaction (an admin form view is one) it folds nothing: the fold's locks on the
    state rows would last as long as that transaction, and a worker recording those members would wait
    for it. Such a reader looks at the change rows instead (``changes_unfolded``); ``None`` says so."""
    if db_connection.in_atomic_block:
        return None
    return changes_fold()


def changes_unfolded(member_id: int) -> bool:
    """Whether the member has changes no fold has taken yet."""
    return MemberChange.objects.filter(member_id=member_id).exists()


def _folded(changes: str, member_table: str) -> str:
    """The state rows that fold ``changes`` (a table, or a table and its ``WHERE``), one per member that
    still exists: pending since its oldest change, or, when its rows are only holds (``hold``), synced at
    version 0 with no change time (``_pending_upsert`` then keeps an existing row's state), with the
    latest hold."""
    return ("SELECT c.member_id, CASE WHEN c.changed_at IS NULL THEN 'synced' ELSE 'pending' END, "
            "CASE WHEN c.changed_at IS NULL THEN 0 ELSE 1 END, 0, 0, 0, c.changed_at, '', '', c.held_until "
            "FROM (SELECT member_id, MIN(CASE WHEN held_until IS NULL THEN changed_at END) AS changed_at, "
            f"MAX(held_until) AS held_until FROM {changes} GROUP BY member_id) c "
            f"JOIN {member_table} m ON m.id = c.member_id ORDER BY c.member_id")


def _fold_batch(change_table: str, table: str, member_table: str) -> int:
    """Fold up to ``FOLD_BATCH`` of the oldest changes in one transaction; returns how many."""
    columns = ("(member_id, status, version, synced_version, claimed_version, attempts, dirty_since, last_error, "
               "last_error_kind, held_until)")
    with transaction.atomic(), db_connection.cursor() as cursor:
        if db_connection.vendor != "postgresql":  # one writer at a time (transactions begin IMMEDIATE)
            cursor.execute(f"SELECT MAX(id), COUNT(*) FROM (SELECT id FROM {change_table} ORDER BY id LIMIT %s)",
                           [FOLD_BATCH])
            upto, taken = cursor.fetchone()
            if upto is not None:
                cursor.execute(f"INSERT INTO {table} {columns} "
                               f"{_folded(f'{change_table} WHERE id <= %s', member_table)} {_pending_upsert(table)}",
                               [upto])
                cursor.execute(f"DELETE FROM {change_table} WHERE id <= %s", [upto])
            return taken
        if len(db_connection.atomic_blocks) == 1:  # a transaction of its own (else the caller's settings hold)
            commit_without_waiting_for_disk()
            cursor.execute(f"SET LOCAL lock_timeout = '{FOLD_LOCK_WAIT_MS}ms'")
        cursor.execute(
            f"WITH taken AS (DELETE FROM {change_table} WHERE id IN (SELECT id FROM {change_table} ORDER BY id "
            f"LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING member_id, changed_at, held_until), "
            f"upserted AS (INSERT INTO {table} {columns} {_folded('taken', member_table)} FOR KEY SHARE OF m "
            f"{_pending_upsert(table)} RETURNING 1) "
            "SELECT COUNT(*) FROM taken", [FOLD_BATCH])
        return cursor.fetchone()[0]


def states_ensure(member_ids: list[int], *, claimed_by: uuid.UUID | None = None) -> list[int] | None:
    """Members never synced have no state row yet: add one (pending, never sent) so they can be claimed.
    Returns the members given a row, or ``None`` where the database cannot say (SQLite before 3.35).

    With ``claimed_by`` the new rows are born claimed by that token: a flush worker must not pick up a
    resync's members between the insert and the resync's claim, and the resync's claim need not pick
    those rows again (``claim(held=...)``).

    Members erased meanwhile get no row: the member rows are joined (and on PostgreSQL locked FOR KEY
    SHARE, as the row's foreign key would lock them, so an erasure still open is waited for and its
    member then left out rather than failing the insert).

    The members are looked up by key (``IN``, not a join with the list): on PostgreSQL a join let the
    planner hash the whole member table for each chunk of 600 (a sequential scan: 7 of 12 ms for a
    chunk at 20,000 members).

    The insert need not wait for the disk: a row lost in a crash of the database server is a member
    without a state row again, which the resync (or a save) adds again."""
    listed = one_param(member_ids)
    member_table = _q(Member._meta.db_table)
    lock = " FOR KEY SHARE OF m" if db_connection.vendor == "postgresql" else ""
    returning = db_connection.features.can_return_rows_from_bulk_insert
    if claimed_by is None:
        claimed, claim_params = "0, NULL, NULL", []
    else:
        token = MemberSyncState._meta.get_field("claim_token").get_db_prep_value(claimed_by, db_connection)
        until = db_connection.ops.adapt_datetimefield_value(timezone.now() + claim_lease())
        claimed, claim_params = "1, %s, %s", [token, until]
    with committed_without_waiting_for_disk(), db_connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {_q(MemberSyncState._meta.db_table)} (member_id, status, version, synced_version, "
            "attempts, last_error, last_error_kind, claimed_version, claim_token, claimed_until) "
            f"SELECT m.id, 'pending', 1, 0, 0, '', '', {claimed} FROM {member_table} m WHERE m.id IN ({listed.sql})"
            f"{lock} ON CONFLICT (member_id) DO NOTHING" + (" RETURNING member_id" if returning else ""),
            [*claim_params, *listed.params])
        return [pk for (pk,) in cursor.fetchall()] if returning else None


def hold(member_ids: list[int], *, until) -> None:
    """Keep the members' next send back until ``until`` (in the caller's transaction). Written as a change
    row that carries the hold, so that, like a save, it waits for no worker's lock; the fold makes the
    member pending with the hold on its state row."""
    table = _q(MemberChange._meta.db_table)
    now = db_connection.ops.adapt_datetimefield_value(timezone.now())
    at = db_connection.ops.adapt_datetimefield_value(until)
    with db_connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} (member_id, changed_at, held_until) VALUES "
                       + ", ".join(["(%s, %s, %s)"] * len(member_ids)),
                       [p for member_id in member_ids for p in (member_id, now, at)])


def unhold(member_ids: list[int]) -> int:
    """End the members' holds; returns how many were ended. The change rows go first: a fold that took
    them meanwhile has committed by the time the state rows are read, so its hold is ended too."""
    ended = MemberChange.objects.filter(member_id__in=member_ids, held_until__isnull=False).update(held_until=None)
    return ended + MemberSyncState.objects.filter(pk__in=member_ids, held_until__isnull=False).update(held_until=None)


# --- claims and leases ----------------------------------------------------------------------------

def _claimable(now) -> Q:
    return (
        Q(status=SyncStatus.PENDING)
        & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        & (Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        & (Q(held_until__isnull=True) | Q(held_until__lt=now))
    )


def claim_lease() -> timedelta:
    return timedelta(seconds=settings.BRAZE_CLAIM_LEASE_SECONDS)


def answer_wait(timeout: float | None = None) -> timedelta:
    """The longest a request waits for Braze's answer: the client's timeout (``BRAZE_HTTP_TIMEOUT``
    unless given) and 5 s for the rest of the round trip. A request leaves only while its claim has
    that much lease left (``Deliverer._hold``)."""
    return timedelta(seconds=(settings.BRAZE_HTTP_TIMEOUT if timeout is None else timeout) + 5)


def claim_lease_check(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """System check: a lease shorter than twice ``answer_wait`` leaves each request a fence of half the
    lease, less than its answer may take; another worker could then take its members and send newer
    values while the old request is still on its way."""
    if claim_lease() >= 2 * answer_wait():
        return []
    return [checks.Warning(
        f"BRAZE_CLAIM_LEASE_SECONDS ({settings.BRAZE_CLAIM_LEASE_SECONDS}) is shorter than twice "
        f"BRAZE_HTTP_TIMEOUT + 5 s ({2 * answer_wait().total_seconds():g} s): a request still waiting for "
        "Braze's answer may outlast its claim, and another worker may send its members' newer values first.",
        hint="Raise BRAZE_CLAIM_LEASE_SECONDS (default 120) or lower BRAZE_HTTP_TIMEOUT (default 10).",
        id="braze_integration.W002")]


def claim(*, limit: int, member_ids: Iterable[int] | None = None, include_synced: bool = False,
          token: uuid.UUID | None = None, held: Collection[int] = ()) -> tuple[uuid.UUID, list[int]]:
    """Stamp up to ``limit`` due members with a fresh token (or ``token``, which also takes the rows it
    holds already, see ``states_ensure``); at most one claim holds a member. ``held``: members whose
    rows ``token`` holds already and that ``states_ensure`` said so of: returned without being read
    again (a first sync's chunk, where the read and its row locks were most of the claim's cost).

    The statements are built before the transaction begins: on SQLite it holds the database's one
    write lock, which a user's save waits for, and the ORM takes 0.4 ms to build the query (a round's
    claim held the lock 1.5 ms for 0.2 ms of SQL). The claim need not wait for the disk: a claim lost
    in a crash of the database server leaves its members as they were, due."""
    changes_fold()
    mine = token
    token = token or uuid.uuid4()
    taken = list(held) if mine is not None else []
    if taken and member_ids is not None:
        known = set(taken)
        member_ids = [pk for pk in member_ids if pk not in known]
        if not member_ids:
            return token, taken
    now = timezone.now()
    pick, pick_params = _claim_pick(now, limit=limit - len(taken), member_ids=member_ids,
                                    include_synced=include_synced, mine=mine)
    token_field = MemberSyncState._meta.get_field("claim_token")
    until = db_connection.ops.adapt_datetimefield_value(now + claim_lease())
    with transaction.atomic(), db_connection.cursor() as cursor:
        commit_without_waiting_for_disk()
        cursor.execute(pick, pick_params)
        rows = [(pk, token_field.to_python(old)) for pk, old in cursor.fetchall()]
        ids = [pk for pk, _ in rows]
        # A token still on a free row belongs to a worker that stopped while holding it.
        _recover_lost({old for _, old in rows if old is not None and old != mine})
        # Rows ``states_ensure`` just added under ``mine`` are stamped already (a first sync's whole chunk).
        stamp = [pk for pk, old in rows if mine is None or old != mine]
        if stamp:
            listed = one_param(stamp)
            # A row still holding another token: its worker stopped, perhaps with a request on its way
            # whose values Braze may now hold. The next send carries every mapped value (``maybe_sent``).
            cursor.execute(
                f"UPDATE {_q(MemberSyncState._meta.db_table)} SET claim_token = %s, claimed_until = %s, "
                "claimed_version = version, maybe_sent = CASE WHEN claim_token IS NULL THEN maybe_sent "
                f"ELSE 'true' END WHERE member_id IN ({listed.sql})",
                [token_field.get_db_prep_value(token, db_connection), until, *listed.params])
    return token, taken + ids


def _claim_pick(now, *, limit: int, member_ids: Iterable[int] | None, include_synced: bool,
                mine: uuid.UUID | None) -> tuple[str, list[Any]]:
    """The claim's ``SELECT member_id, claim_token`` of the rows it may take, oldest change first, as
    SQL and parameters; on PostgreSQL locked, skipping rows another claim is locking."""
    free = (Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)) if include_synced else _claimable(now)
    if mine is not None:
        free |= Q(claim_token=mine)
    qs = MemberSyncState.objects.filter(free)
    if member_ids is not None:
        qs = qs.filter(pk__in=one_param(member_ids))
    else:
        qs = qs.order_by("dirty_since")
    sql, params = qs.values_list("pk", "claim_token")[:limit].query.sql_with_params()
    if db_connection.vendor == "postgresql":  # as select_for_update(skip_locked=True), which needs a transaction to build
        sql += " FOR UPDATE SKIP LOCKED"
    return sql, list(params)


def claim_holds(token: uuid.UUID, member_ids: Iterable[int], *, for_at_least: timedelta) -> bool:
    """Whether the claim still holds every one of these members, with at least ``for_at_least`` of its
    lease left: the fence a worker passes before each request it sends. A worker that was paused past
    its lease (or whose members were erased, or taken by another claim once the lease ran out) must not
    send what it built: another worker may have sent newer values, and an erased member's profile would
    come back."""
    ids = sorted(set(member_ids))
    if not ids:
        return True
    listed, params = one_param_table(ids)
    token_param = MemberSyncState._meta.get_field("claim_token").get_db_prep_value(token, db_connection)
    until = db_connection.ops.adapt_datetimefield_value(timezone.now() + for_at_least)
    # Each member found by its key; on SQLite the unary + keeps the planner off the claim_token index,
    # which would walk the whole claim and scan the list once per row (as in ``finish_synced``).
    token_column = "+s.claim_token" if db_connection.vendor == "sqlite" else "s.claim_token"
    with db_connection.cursor() as cursor:
        cursor.execute(
            f"SELECT COUNT(*) FROM {listed} JOIN {_q(MemberSyncState._meta.db_table)} s ON s.member_id = ids.value "
            f"WHERE {token_column} = %s AND s.claimed_until > %s", [*params, token_param, until])
        return cursor.fetchone()[0] == len(ids)


def claim_renew(token: uuid.UUID) -> int:
    """Extend the lease of the members the claim still holds (a claim that waits for the rate limit may
    outlast one lease); returns how many."""
    now = timezone.now()
    return MemberSyncState.objects.filter(claim_token=token, claimed_until__gt=now).update(
        claimed_until=now + claim_lease())


def claimable_exists() -> bool:
    changes_fold()
    return MemberSyncState.objects.filter(_claimable(timezone.now())).exists()


def next_due_in() -> float | None:
    """Seconds until the soonest pending member becomes claimable (a retry comes due, or the lease of
    a worker that stopped runs out), if any."""
    now = timezone.now()
    pending = MemberSyncState.objects.filter(status=SyncStatus.PENDING)
    candidates = [
        pending.filter(next_attempt_at__gt=now).order_by("next_attempt_at").values_list("next_attempt_at", flat=True).first(),
        pending.filter(claimed_until__gt=now).order_by("claimed_until").values_list("claimed_until", flat=True).first(),
    ]
    soonest = min((c for c in candidates if c is not None), default=None)
    if soonest is None:
        return None
    return max(0.0, (soonest - now).total_seconds())


def release(token: uuid.UUID, member_ids: Iterable[int] | None = None) -> None:
    """Give members back without counting an attempt (rate limit, paused connection)."""
    qs = MemberSyncState.objects.filter(claim_token=token)
    if member_ids is not None:
        qs = qs.filter(pk__in=list(member_ids))
    qs.update(claim_token=None, claimed_until=None)


def release_unsent(token: uuid.UUID, *, born: Iterable[int]) -> None:
    """Give back a claim that sent nothing, such as a resync's next chunk when the resync stops, and
    remove the rows ``states_ensure`` added for it (``born``) that nothing touched (``unsent_forget``)."""
    with transaction.atomic():
        release(token)
        unsent_forget(born)


def unsent_forget(born: Iterable[int]) -> int:
    """Remove again the state rows ``states_ensure`` added (``born``) that were never sent, that nothing
    touched since (no change, no hold, no request that may have reached Braze: ``maybe_sent``) and that no
    claim holds: those members are as they were before,
    never synced, rather than pending for the flush workers after a resync that stopped. Returns how
    many were removed. A member whose request was on its way when the resync stopped may be among
    them: whether Braze has it is not known, and the next resync sends it."""
    born = list(born)
    if not born:
        return 0
    deleted, _ = MemberSyncState.objects.filter(
        pk__in=one_param(born), claim_token__isnull=True, status=SyncStatus.PENDING, synced_version=0,
        dirty_since__isnull=True, held_until__isnull=True, maybe_sent__isnull=True).delete()
    return deleted


def _recover_lost(tokens: set[uuid.UUID]) -> int:
    """Requests still "sending" under a claim that expired: their worker died. Braze may have
    processed them, so their events count as ambiguous sends (possible duplicates)."""
    if not tokens:
        return 0
    lost = list(SyncRequest.objects.filter(outcome=RequestOutcome.SENDING, claim_token__in=tokens)
                .values_list("pk", "errors"))
    for pk, outbox_ids in lost:
        ids = [i for i in outbox_ids if isinstance(i, int)] if isinstance(outbox_ids, list) else []
        OutboxItem.objects.filter(pk__in=ids).update(ambiguous_sends=F("ambiguous_sends") + 1)
        SyncRequest.objects.filter(pk=pk).update(
            outcome=RequestOutcome.LOST, maybe_delivered=True, errors=[],
            message="The worker stopped before Braze answered; the members were sent again.")
    return len(lost)


def abandon(token: uuid.UUID) -> None:
    """Give up a claim after an unexpected error: its unanswered requests count as lost, its members are free."""
    try:
        with transaction.atomic():
            _recover_lost({token})
            release(token)
    except Exception:  # the database itself may be what failed; then the lease frees the members
        logger.exception("Could not release the claim after an error; the members are free again after the lease.")


def recover_lost_requests(*, older_than: timedelta | None = None) -> int:
    """Housekeeping: requests "sending" for longer than a lease whose members were never claimed again."""
    cutoff = timezone.now() - (older_than or claim_lease())
    tokens = set(SyncRequest.objects.filter(outcome=RequestOutcome.SENDING, created_at__lt=cutoff)
                 .exclude(claim_token=None).values_list("claim_token", flat=True))
    live = set(MemberSyncState.objects.filter(claim_token__in=tokens, claimed_until__gte=timezone.now())
               .values_list("claim_token", flat=True))
    return _recover_lost(tokens - live)


# --- finishing a claim -----------------------------------------------------------------------------

def finish_synced(token: uuid.UUID, *, member_ids: list[int], sent_values: dict[int, dict[str, Any] | str],
                  request_id: int | None, partial: bool) -> int:
    """Braze has these members' values: synced, unless the member changed again meanwhile (or the
    send was ``partial``: some mapped fields only). ``sent_values`` are the last-sent values to store
    per member (members left out keep theirs). Returns how many claimed rows were finished.

    One ``UPDATE ... FROM`` the members' values (a JSON object walked by ``jsonb_each`` /
    ``json_each``) for all of them: the status compares ``version`` with the claimed version in
    SQL, so nothing is read first."""
    if not member_ids:
        return 0
    table = _q(MemberSyncState._meta.db_table)
    token_param = MemberSyncState._meta.get_field("claim_token").get_db_prep_value(token, db_connection)
    # One JSON object {member id: values to store, or null to keep}: one parameter however many
    # members (arrays of JSON texts cost psycopg a regex escape per character). Values given as
    # text are JSON written already (the request's), put in as they are.
    sent = "{" + ",".join(
        f'"{pk}":' + (value if type(value := sent_values.get(pk)) is str else payloads.encode_text(value))
        for pk in member_ids) + "}"
    if db_connection.vendor == "postgresql":
        source, sent_id, sent_value = "jsonb_each(%s::jsonb) AS sent", "sent.key::bigint", "NULLIF(sent.value, 'null')"
        claimed = f"{table}.claim_token = %s"
    else:  # SQLite's json_each gives JSON null as NULL
        source, sent_id, sent_value = "json_each(%s) AS sent", "CAST(sent.key AS INTEGER)", "sent.value"
        # The unary + keeps SQLite off the claim_token index: it would walk the whole claim (600 rows)
        # and scan the JSON once per row; this way it walks the JSON and finds each row by key.
        claimed = f"+{table}.claim_token = %s"
    assignments = [f"last_sent_values = COALESCE({sent_value}, {table}.last_sent_values)", "attempts = 0",
                   "next_attempt_at = NULL", "last_error = ''", "last_error_kind = ''", "claim_token = NULL",
                   "claimed_until = NULL"]
    params: list[Any] = []
    if request_id is not None:
        assignments += ["last_synced_at = %s", "last_request_id = %s"]
        params += [db_connection.ops.adapt_datetimefield_value(timezone.now()), request_id]
    if not partial:  # Braze has every mapped value now, those a lost request may have carried too
        same = f"{table}.version = {table}.claimed_version"
        assignments += ["maybe_sent = NULL", f"synced_version = {table}.claimed_version",
                        f"status = CASE WHEN {same} THEN 'synced' ELSE 'pending' END",
                        f"dirty_since = CASE WHEN {same} THEN NULL ELSE {table}.dirty_since END"]
    with db_connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET {', '.join(assignments)} FROM {source} "
            f"WHERE {table}.member_id = {sent_id} AND {claimed}",
            [*params, sent, token_param])
        return cursor.rowcount


def finish_failed(token: uuid.UUID, *, errors: dict[int, str], request_id: int | None) -> None:
    """Braze refused these members' data (or it cannot be sent): failed until the member changes."""
    by_error: dict[str, list[int]] = {}
    for pk, error in errors.items():
        by_error.setdefault(error[:2000], []).append(pk)
    same = Q(version=F("claimed_version"))
    with transaction.atomic():
        for error, pks in by_error.items():
            updates: dict[str, Any] = {
                "status": Case(When(same, then=Value(SyncStatus.FAILED)), default=Value(SyncStatus.PENDING)),
                "last_error": error, "last_error_kind": "invalid_data", "attempts": 0, "next_attempt_at": None,
                "claim_token": None, "claimed_until": None}
            if request_id is not None:
                updates["last_request_id"] = request_id
            MemberSyncState.objects.filter(claim_token=token, pk__in=pks).update(**updates)


UNSENDABLE = "unsendable"  # ``last_error_kind`` of a synced member with attributes Braze cannot take


def unsendable_write(notes: dict[int, str]) -> None:
    """Record, on members just finished, which of their attributes were left out and why."""
    by_note: dict[str, list[int]] = {}
    for pk, note in notes.items():
        by_note.setdefault(note[:2000], []).append(pk)
    for note, pks in by_note.items():
        MemberSyncState.objects.filter(pk__in=pks, claim_token=None).update(last_error=note, last_error_kind=UNSENDABLE)


def request_members_write(request_id: int, rows: list[tuple[int, int, str]]) -> None:
    """The members a request carried, as ``(member_id, object_count, error)``.

    One multi-row INSERT: Django's bulk_create spends more time preparing these rows than the
    database inserting them, and executemany is a round trip per row on PostgreSQL."""
    if not rows:
        return
    existing = _members_existing([member_id for member_id, _, _ in rows])  # once, not once per row
    rows = [row for row in rows if row[0] in existing]
    if not rows:
        return
    params = [value for member_id, count, error in rows for value in (request_id, member_id, count, error)]
    with db_connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {_q(SyncRequestMember._meta.db_table)} "
            "(request_id, member_id, object_count, error) VALUES " + ", ".join(["(%s, %s, %s, %s)"] * len(rows)),
            params)


def _members_existing(member_ids: list[int]) -> set[int]:
    """Which of these members still exist; a member erased while its request was out is left out of the log.

    On PostgreSQL the rows are locked FOR KEY SHARE (what the insert's foreign key takes anyway), so an
    erasure cannot delete one between this look and the insert."""
    table = _q(Member._meta.db_table)
    placeholders = ", ".join(["%s"] * len(member_ids))
    lock = " FOR KEY SHARE" if db_connection.vendor == "postgresql" else ""
    with db_connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {table} WHERE id IN ({placeholders}){lock}", member_ids)
        return {row[0] for row in cursor.fetchall()}


# --- flush slots -----------------------------------------------------------------------------------

def _slot_free(now) -> Q:
    return Q(busy_until__isnull=True) | Q(busy_until__lt=now)


# Until when a worker promised (as this process last read the slots) to look for new changes
# once more: a change committed before then needs no task and no query (see ``slot_watched``).
_watched_until = None
WATCH_MARGIN = timedelta(milliseconds=200)  # clocks of processes on other hosts may differ a little


def slot_watched() -> bool:
    """Whether a worker holding a slot promised to look for changes after now (as last read): a
    change committed now is seen by it, so the save path queues nothing and asks nothing."""
    return _watched_until is not None and timezone.now() + WATCH_MARGIN < _watched_until


def slot_take(*, unless_watched: bool = False) -> int | None:
    """Take a free flush slot. The common case on the save path is "all busy" (a worker is
    flushing or lingering): that costs one round trip, written in SQL to keep the ORM's query
    building off the save path, and it reads the workers' promise to look again (``slot_watched``).

    ``unless_watched``: take none while a worker's promise covers now, even if a slot is free. A
    change committed before this call is seen by that worker's next look; a second task would only
    split the same trickle of saves into twice as many rounds."""
    global _watched_until
    now = timezone.now()
    table = _q(FlushSlot._meta.db_table)
    at = db_connection.ops.adapt_datetimefield_value(now)
    with db_connection.cursor() as cursor:
        cursor.execute(
            f"SELECT (SELECT id FROM {table} WHERE busy_until IS NULL OR busy_until < %s LIMIT 1), "
            f"(SELECT COUNT(*) FROM {table}), (SELECT MAX(watching_until) FROM {table} WHERE busy_until >= %s)",
            [at, at])
        free_id, slots, watching = cursor.fetchone()
    _watched_until = FlushSlot._meta.get_field("watching_until").to_python(watching) if watching else None
    if _watched_until is not None and timezone.is_naive(_watched_until):
        _watched_until = timezone.make_aware(_watched_until, UTC)
    if unless_watched and slot_watched():
        return None
    if free_id is None:
        if slots >= settings.BRAZE_SYNC_CONCURRENCY:
            return None
        return FlushSlot.objects.create(busy_until=now + SLOT_LEASE).pk
    taken = FlushSlot.objects.filter(pk=free_id).filter(_slot_free(now)).update(busy_until=now + SLOT_LEASE)
    return free_id if taken else None


def slot_watched_by_another(slot_id: int) -> bool:
    """Whether a task holding a slot of lower number promised to look for changes beyond now: one
    lingering task sees every change, so the others stop lingering (the lower number stays, so
    two of them never both give way)."""
    now = timezone.now()
    return FlushSlot.objects.filter(pk__lt=slot_id, busy_until__gte=now, watching_until__gt=now + WATCH_MARGIN).exists()


def slot_renew(slot_id: int | None, *, watching_until=None) -> None:
    """Keep the slot; ``watching_until``: the task promises to look for new changes after that time."""
    if slot_id is not None:
        updates = {"busy_until": timezone.now() + SLOT_LEASE}
        if watching_until is not None:
            updates["watching_until"] = watching_until
        FlushSlot.objects.filter(pk=slot_id).update(**updates)


def slot_release(slot_id: int | None) -> None:
    if slot_id is not None:
        FlushSlot.objects.filter(pk=slot_id).update(busy_until=None, watching_until=None)
        slot_promise_forget()  # the promise this process read may have been this slot's


def slot_promise_forget() -> None:
    """Trust no promise read before: the next save reads the slots again."""
    global _watched_until
    _watched_until = None
