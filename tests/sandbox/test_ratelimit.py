"""Pure tests of the sandbox's fixed-window rate limiter, on a fake clock."""

from __future__ import annotations

import pytest

from braze_integration.sandbox.ratelimit import FixedWindowRateLimiter


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_given_limit_when_window_full_then_refused_until_the_next_window() -> None:
    clock = Clock(1_000_000.5)
    limiter = FixedWindowRateLimiter(2, 3.0, clock=clock)
    decisions = [limiter.hit() for _ in range(3)]
    assert [decision.allowed for decision in decisions] == [True, True, False]
    assert [decision.remaining for decision in decisions] == [1, 0, 0]
    # Windows are aligned to the epoch: 1_000_000.5 lies in [999_999, 1_000_002).
    assert decisions[2].reset_epoch == 1_000_002 and decisions[2].retry_after == 2
    assert decisions[2].headers()["Retry-After"] == "2" and "Retry-After" not in decisions[0].headers()
    clock.now = 1_000_002.0
    assert limiter.hit().allowed


def test_given_answers_when_headers_built_then_the_three_braze_headers() -> None:
    decision = FixedWindowRateLimiter(3000, 3.0, clock=Clock(30.0)).hit()
    assert decision.headers() == {
        "X-RateLimit-Limit": "3000",
        "X-RateLimit-Remaining": "2999",
        "X-RateLimit-Reset": "33",
    }


@pytest.mark.parametrize(("limit", "window"), [(0, 1.0), (1, 0.0)])
def test_given_non_positive_limit_or_window_when_built_then_value_error(limit: int, window: float) -> None:
    with pytest.raises(ValueError):
        FixedWindowRateLimiter(limit, window)
