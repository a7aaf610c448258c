"""The shared rate limiter's budget: never over the limit in any window, whatever its alignment."""

import pytest

from braze_integration.models import Connection
from braze_integration.ratelimit import slice_budget


@pytest.mark.parametrize(("limit", "seconds", "at_least"), [(3000, 3, 0.95), (20, 1, 0.9), (50000, 60, 0.95), (2, 1, 0.5)])
def test_the_budget_never_exceeds_the_limit_in_any_window_and_lets_most_of_it_through(limit, seconds, at_least):
    length, allowed = slice_budget(Connection(rate_limit_requests=limit, rate_limit_seconds=seconds))

    slices_per_window = round(seconds / length)
    # A window-long interval starting anywhere touches at most one slice more than fit in it.
    assert (slices_per_window + 1) * allowed <= limit
    # Steady throughput: what the slices of one window let through.
    assert slices_per_window * allowed >= at_least * limit


@pytest.mark.django_db(transaction=True)
def test_the_database_counter_takes_what_the_slice_allows_and_refuses_the_rest(braze_connection, settings):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from braze_integration import ratelimit
    from braze_integration.models import RateLimitWindow

    settings.REDIS_URL = ""
    with CaptureQueriesContext(connection) as queries:
        taken = [ratelimit._count_up(braze_connection.pk, 7, 2, 5) for _ in range(3)]

    assert taken == [True, True, False]  # 2 + 2 fit in 5; a third 2 would make 6
    assert RateLimitWindow.objects.get(connection=braze_connection, window_start=7).count == 4
    lazy = [q for q in queries.captured_queries if "synchronous_commit" in q["sql"]]
    # PostgreSQL: each count commits without waiting for the disk; SQLite's WAL mode needs nothing.
    assert len(lazy) == (3 if connection.vendor == "postgresql" else 0)


@pytest.mark.django_db(transaction=True)
def test_inside_a_callers_transaction_the_counter_leaves_its_commit_alone(braze_connection, settings):
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from braze_integration import ratelimit

    settings.REDIS_URL = ""
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        assert ratelimit._count_up(braze_connection.pk, 8, 1, 5)

    assert not [q for q in queries.captured_queries if "synchronous_commit" in q["sql"]]
