"""A block whose transaction is rolled back when the caller fails after it (a view or a task that
raises after saving), for tests of what a retry of the same objects writes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import transaction


class CallerFailed(Exception):
    """The caller's failure after the block's saves."""


@contextmanager
def rolled_back() -> Iterator[None]:
    with pytest.raises(CallerFailed), transaction.atomic():
        yield
        raise CallerFailed
