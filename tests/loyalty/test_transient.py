"""Which database errors are retried, how often, and never inside a caller's transaction."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, OperationalError

from loyaltysync import transient


class _PostgresError(Exception):
    def __init__(self, sqlstate: str):
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def _wrapped(sqlstate: str) -> OperationalError:
    error = OperationalError("from the server")
    error.__cause__ = _PostgresError(sqlstate)
    return error


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    monkeypatch.setattr(transient.time, "sleep", lambda seconds: None)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (_wrapped("40P01"), True),  # deadlock detected
        (_wrapped("40001"), True),  # serialization failure
        (OperationalError("database is locked"), True),
        (_wrapped("23505"), False),  # unique violation: the same again next time
        (IntegrityError("UNIQUE constraint failed"), False),
        (RuntimeError("database is locked"), False),  # not from the database layer
    ],
)
def test_is_transient(error, expected):
    assert transient.is_transient(error) is expected


def failing(times: int, error: Exception):
    calls = []

    @transient.retry_transient
    def work():
        calls.append(1)
        if len(calls) <= times:
            raise error
        return "done"

    return work, calls


def test_given_a_transient_error_twice_then_the_third_attempt_answers():
    work, calls = failing(2, _wrapped("40P01"))

    assert work() == "done"
    assert len(calls) == 3


def test_given_a_transient_error_every_time_then_it_gives_up_after_the_attempts():
    work, calls = failing(99, OperationalError("database is locked"))

    with pytest.raises(OperationalError):
        work()
    assert len(calls) == transient.ATTEMPTS


def test_given_a_lasting_error_then_it_is_not_retried():
    work, calls = failing(1, IntegrityError("UNIQUE constraint failed"))

    with pytest.raises(IntegrityError):
        work()
    assert len(calls) == 1


def test_given_a_caller_transaction_then_the_error_goes_to_its_owner(db):
    # ``db`` runs the test inside a transaction: redoing only the inner work would be wrong.
    work, calls = failing(1, _wrapped("40P01"))

    with pytest.raises(OperationalError):
        work()
    assert len(calls) == 1
