"""Python's cyclic garbage collector, kept off the objects a worker starts with.

A worker that sends members builds and drops a claim's rows, payloads and requests every few
milliseconds, so Python's collector runs often, and its full collections walk every object the
process holds: Django's modules, models and settings too, about 100,000 objects that never become
garbage. In an in-process resync of 30,000 members on SQLite there were six full collections of
55-60 ms each, about 12 % of the process's CPU.

``gc.freeze()`` moves the objects that exist at start-up out of the collector's sight (it first
collects what is garbage already, so nothing is kept that should go): full collections then walk
only what the process made since. Done when a django-q2 worker starts (``post_spawn``), when a
gunicorn worker has loaded the application (``post_worker_init`` in ``deploy/gunicorn.conf.py``),
and before a resync runs in a command's process.
"""

from __future__ import annotations

import gc

_frozen = False  # once per process: what a process holds at start-up


def freeze_startup(**kwargs) -> None:
    """Collect once, then keep everything alive now out of later collections. Only the first call in a
    process freezes: later objects stay collectable."""
    global _frozen
    if _frozen:
        return
    _frozen = True
    gc.collect()
    gc.freeze()
