"""django-q2 tasks: thin wrappers that call one service."""

from django.conf import settings
from django_q.conf import Conf

from . import resync, resync_parallel, services
from .models import ResyncRun


def sync_flush(slot_id: int | None = None) -> str:
    # Run inline (django-q2's sync mode: tests, the admin without a worker) a flush must not linger.
    linger = 0.0 if Conf.SYNC else settings.BRAZE_FLUSH_LINGER_SECONDS
    result = services.sync_flush(slot_id=slot_id, linger=linger)
    report = result.report
    return (f"sent {report.members_sent}, unchanged {report.members_unchanged}, failed {report.members_failed}, "
            f"requests {report.requests}" + (f"; stopped: {result.stopped}" if result.stopped else ""))


def sync_periodic() -> None:
    """Every minute: pick up retries that came due, work a lost task left behind, old rate windows."""
    services.sync_housekeeping()
    services.flush_request()


def resync_run(run_id: int) -> str:
    """A resync started from the admin: run it (or resume it) from its cursor."""
    run = resync.resync_execute(run=ResyncRun.objects.get(pk=run_id))
    return (f"resync #{run.pk}: {run.members_done}/{run.total} members, sent {run.members_sent}, "
            f"unchanged {run.members_unchanged}, failed {run.members_failed}, requests {run.requests}")


def resync_part(part_id: int) -> str:
    """One key range of a resync that runs on every worker."""
    return resync_parallel.part_execute(part_id=part_id)
