"""Pure tests of the sandbox's fault injector."""

from __future__ import annotations

import pytest

from braze_integration.sandbox.config import FaultConfig
from braze_integration.sandbox.faults import FaultInjector


def test_given_fail_next_when_requests_arrive_then_that_many_503s_then_none() -> None:
    injector = FaultInjector(FaultConfig(fail_next=2))
    faults = [injector.before_processing() for _ in range(3)]
    assert [(fault.kind, fault.status) if fault else None for fault in faults] == [
        ("error", 503),
        ("error", 503),
        None,
    ]


def test_given_same_seed_when_rates_drawn_then_same_faults() -> None:
    def draws() -> list[object]:
        injector = FaultInjector(FaultConfig(error_rate=0.3, timeout_rate=0.2, seed=11))
        return [injector.before_processing() for _ in range(50)]

    first = draws()
    assert first == draws()
    kinds = {fault.kind for fault in first if fault is not None}
    assert kinds == {"error", "timeout"}


def test_given_ack_lost_next_when_taken_then_counts_down() -> None:
    injector = FaultInjector(FaultConfig(ack_lost_next=1))
    assert [injector.take_ack_lost(), injector.take_ack_lost()] == [True, False]


def test_given_unknown_or_invalid_setting_when_updated_then_value_error_and_config_kept() -> None:
    injector = FaultInjector(FaultConfig(error_rate=0.1))
    with pytest.raises(ValueError, match="bogus"):
        injector.update(bogus=1)
    with pytest.raises(ValueError, match="error_rate"):
        injector.update(error_rate=2)
    assert injector.config.error_rate == 0.1
