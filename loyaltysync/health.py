"""Health endpoints for load balancers, orchestrators and monitoring (django-health-check's checks).

- ``/healthz``: the process answers. Touches no database and no broker, so a database outage does not
  make an orchestrator restart every web process.
- ``/readyz``: every check of ``settings.HEALTH_CHECKS`` passes (database, broker, a worker seen
  recently, the Braze connection). 200 when all pass, 503 otherwise, as JSON naming each check:
  ``{"status": "unavailable", "checks": {"worker": {"ok": false, "error": "..."}, ...}}``.

Both are public (a load balancer has no credentials), so what they say is fixed wording chosen here:
no host names, URLs, keys or driver messages.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import inspect
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import timedelta

from django.conf import settings
from django.db import connections
from django.http import JsonResponse
from django.utils import timezone
from django.utils.module_loading import import_string
from django.views.decorators.cache import never_cache
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.status import Stat
from health_check import Database as LibraryDatabase
from health_check import HealthCheck
from health_check.exceptions import HealthCheckException, ServiceUnavailable

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Database(LibraryDatabase):
    """django-health-check's ``SELECT 1``, with a fixed message instead of the driver's (which may name hosts)."""

    def run(self) -> None:
        try:
            super().run()
        except HealthCheckException as err:
            raise ServiceUnavailable("the database does not answer") from err


@dataclasses.dataclass
class ThreadedCheck(HealthCheck):
    """A check that may use the ORM. It runs in a thread of the view's pool, where no request ends to
    close the thread's database connections, so it closes them itself."""

    def run(self) -> None:
        try:
            self.check()
        finally:
            connections.close_all()  # this thread's connections only: they are per thread

    @abc.abstractmethod
    def check(self) -> None:
        """Raise ``ServiceUnavailable`` with a message fit for the public."""


@dataclasses.dataclass
class Broker(ThreadedCheck):
    """django-q2's broker answers a ping (Redis when ``REDIS_URL`` is set; the ORM broker is the database)."""

    def check(self) -> None:
        try:
            answered = get_broker().ping()
        except Exception as err:  # each broker's client raises its own errors
            raise ServiceUnavailable("the task broker does not answer") from err
        if not answered:
            raise ServiceUnavailable("the task broker does not answer")


@dataclasses.dataclass
class WorkerSeen(ThreadedCheck):
    """At least one ``qcluster`` is running: its cluster stats (saved by its sentinel every half second
    into the shared cache or Redis) are younger than ``HEALTH_WORKER_SEEN_SECONDS``."""

    def check(self) -> None:
        horizon = timezone.now() - timedelta(seconds=settings.HEALTH_WORKER_SEEN_SECONDS)
        try:
            stats = Stat.get_all(broker=get_broker())
        except Exception as err:  # the stats live in the broker's cache; its client raises its own errors
            raise ServiceUnavailable("the worker stats cannot be read") from err
        running = (Conf.STARTING, Conf.WORKING, Conf.IDLE)
        if not any(stat.timestamp >= horizon and getattr(stat, "status", None) in running for stat in stats):
            raise ServiceUnavailable(
                f"no task worker (qcluster) seen in the last {settings.HEALTH_WORKER_SEEN_SECONDS} seconds"
            )


@never_cache
def liveness(request) -> JsonResponse:
    """``/healthz``: answers while the process can serve requests."""
    return JsonResponse({"status": "alive"})


def check_run(check: HealthCheck) -> str | None:
    """Run one check in the calling thread: its public error message, or None when it passes."""
    try:
        if inspect.iscoroutinefunction(check.run):
            asyncio.run(check.run())  # a pool thread has no event loop of its own
        else:
            check.run()
    except HealthCheckException as err:
        # The log (not the public answer) keeps the cause, e.g. the database driver's message.
        logger.warning("Health check %r failed: %s", check, err.message, exc_info=True)
        return err.message
    except Exception:
        logger.exception("Health check %r raised", check)
        return "unknown error"
    return None


@never_cache
def readiness(request) -> JsonResponse:
    """``/readyz``: the checks of ``settings.HEALTH_CHECKS`` at once, each within its timeout.

    A plain (sync) view running the checks in a thread pool: under WSGI there is no event loop, and the
    library's async view would start one per request."""
    checks = {name: import_string(path)() for name, path in settings.HEALTH_CHECKS.items()}
    pool = ThreadPoolExecutor(max_workers=len(checks), thread_name_prefix="readyz")
    try:
        started = time.monotonic()
        futures = {name: pool.submit(check_run, check) for name, check in checks.items()}
        errors = {}
        for name, future in futures.items():
            limit = checks[name].timeout.total_seconds()
            try:
                errors[name] = future.result(timeout=max(0.0, started + limit - time.monotonic()))
            except FutureTimeout:
                errors[name] = f"no answer within {limit:g} seconds"
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # a hanging check must not hold the answer
    failed = any(errors.values())
    return JsonResponse(
        {
            "status": "unavailable" if failed else "ready",
            "checks": {name: {"ok": True} if error is None else {"ok": False, "error": error}
                       for name, error in errors.items()},
        },
        status=503 if failed else 200,
    )
