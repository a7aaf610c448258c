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
