"""Workers keep the objects they start with out of Python's full collections (``loyaltysync.collector``)."""

from __future__ import annotations

import gc
import runpy
import weakref

import pytest
from django.conf import settings
from django_q.signals import post_spawn

from loyaltysync import checkpoints, collector


@pytest.fixture
def fresh_process(monkeypatch):
    """As in a process that has not frozen anything yet; everything frozen here is let go after (and the
    checkpoint mark that ``post_spawn`` also sets is given back)."""
    monkeypatch.setattr(collector, "_frozen", False)
    monkeypatch.setattr(checkpoints, "_pages", checkpoints._pages)
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_a_worker_freezes_what_it_holds_at_start_once(fresh_process):
    alive = len(gc.get_objects())
    post_spawn.send(sender="django_q", proc_name="Process-1")
    frozen = gc.get_freeze_count()
    assert frozen >= alive * 0.9  # what the process held, not a handful
    assert len(gc.get_objects()) < alive / 10

    later = [[n] for n in range(1000)]  # made after start-up: collectable
    collector.freeze_startup()
    assert gc.get_freeze_count() <= frozen  # nothing frozen again (frozen objects may still be freed)
    assert any(obj is later[0] for obj in gc.get_objects())  # still in the collector's sight


def test_garbage_at_start_is_collected_not_frozen(fresh_process):
    class Cycle:
        pass

    garbage = Cycle()
    garbage.me = garbage  # only the cyclic collector can free it
    gone = weakref.ref(garbage)
    del garbage
    collector.freeze_startup()
    assert gone() is None


def test_a_web_worker_freezes_once_the_application_is_loaded(fresh_process):
    conf = runpy.run_path(str(settings.BASE_DIR / "deploy" / "gunicorn.conf.py"))
    conf["post_worker_init"](worker=None)
    assert gc.get_freeze_count() > 0
