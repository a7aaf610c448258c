"""``interrupts``: SIGINT and SIGTERM raise only at safe points, in waits, or when they come twice."""

import os
import signal
import time

import pytest

from braze_integration import interrupts


def signal_self(signum=signal.SIGTERM) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(0.01)  # the handler runs in this thread at the next instruction; give it one


def test_a_signal_is_noted_and_raised_at_the_next_safe_point():
    reached = []
    with interrupts.stopping_at_safe_points():
        signal_self()
        reached.append("after the signal")  # the work under way goes on
        with pytest.raises(KeyboardInterrupt):
            interrupts.safe_point()
        interrupts.safe_point()  # raised once
    assert reached == ["after the signal"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_interrupts_a_wait_at_once(signum):
    with interrupts.stopping_at_safe_points(), pytest.raises(KeyboardInterrupt):
        with interrupts.wait_interruptibly():
            os.kill(os.getpid(), signum)
            time.sleep(5)


def test_a_wait_begun_after_a_signal_raises_before_waiting():
    with interrupts.stopping_at_safe_points():
        signal_self()
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt), interrupts.wait_interruptibly():
            time.sleep(5)
    assert time.monotonic() - started < 1


def test_a_second_signal_before_the_first_was_raised_stops_at_once():
    with interrupts.stopping_at_safe_points():
        signal_self()
        with pytest.raises(KeyboardInterrupt):
            signal_self()  # a database that hangs: the way out


def test_the_handlers_before_are_back_after_the_block_and_nothing_changes_outside_it():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with interrupts.stopping_at_safe_points():
        assert signal.getsignal(signal.SIGTERM) is not before[0]
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    with interrupts.wait_interruptibly():
        interrupts.safe_point()  # no signal noted, no handler: nothing raised
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C outside the block acts as Python's default
        signal_self(signal.SIGINT)
