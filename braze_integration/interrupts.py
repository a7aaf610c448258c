"""Ctrl-C and SIGTERM for a command that sends and records: the signal asks the command to stop, and
it stops where stopping leaves nothing half done.

Python raises ``KeyboardInterrupt`` wherever the main thread is when a signal comes. In a resync that
can be inside the transaction that records Braze's answer (rolled back: Braze has the members, the
database says it does not, and ``--resume`` sends them again), between a request leaving and its
being noted as on the wire (its answer is never recorded), or inside the database driver's call
(psycopg's connection is then left busy, and the cleanup's own statements fail). Under
``stopping_at_safe_points()`` a signal is only noted; ``KeyboardInterrupt`` is raised at the next
``safe_point()``, or at once when the main thread is in a ``wait_interruptibly()`` block (waiting for
an answer, sleeping): the places where nothing is half done. A second signal before the first was
raised stops at once, wherever the thread is: the way out of a database that hangs.

Outside ``stopping_at_safe_points()`` (a django-q2 worker, which handles its own signals; a test)
``safe_point()`` and ``wait_interruptibly()`` change nothing.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

# SIGHUP: the terminal closed, or the SSH session dropped.
SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class _State:
    installed = False
    noted = False  # a signal came and its KeyboardInterrupt is not raised yet
    waiting = 0  # the main thread is in this many ``wait_interruptibly()`` blocks


_state = _State()


def _on_signal(signum, frame) -> None:
    if _state.noted or _state.waiting:  # a second signal, or a wait that may be cut short
        _state.noted = False
        raise KeyboardInterrupt
    _state.noted = True


@contextlib.contextmanager
def stopping_at_safe_points() -> Iterator[None]:
    """For the block's duration, SIGINT, SIGTERM and SIGHUP raise ``KeyboardInterrupt`` only at safe points.
    In a thread other than the main one (which gets no signals) this changes nothing."""
    if threading.current_thread() is not threading.main_thread() or _state.installed:
        yield
        return
    previous = {signum: signal.signal(signum, _on_signal) for signum in SIGNALS}
    _state.installed, _state.noted, _state.waiting = True, False, 0
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _state.installed, _state.noted, _state.waiting = False, False, 0


def safe_point() -> None:
    """Raise ``KeyboardInterrupt`` if a signal came since the last safe point."""
    if _state.noted and threading.current_thread() is threading.main_thread():
        _state.noted = False
        raise KeyboardInterrupt


@contextlib.contextmanager
def wait_interruptibly() -> Iterator[None]:
    """A block that only waits (for an answer, for time to pass): a signal interrupts it at once."""
    if not _state.installed or threading.current_thread() is not threading.main_thread():
        yield
        return
    safe_point()
    _state.waiting += 1
    try:
        safe_point()  # a signal that came just before the wait began
        yield
    finally:
        _state.waiting -= 1
