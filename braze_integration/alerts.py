"""E-mail ``ADMINS`` when an alarm (see ``monitoring.sync_alarms``) is raised, and once more when it clears.

What was last said about each alarm is an ``AlertState`` row. A change is claimed with a conditional
UPDATE (``active`` from the old value to the new), so among several workers and web processes checking
at once exactly one flips the row and sends the e-mail; the others find nothing to flip. The e-mail is
sent inside that transaction: if sending fails, the flip is rolled back and the next check tries again.

Checked by every worker's periodic task, by each ``/metrics`` scrape and by ``manage.py braze_alerts``
(for cron): the "no worker" alarm needs a clock that is not a worker.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.core.mail import mail_admins
from django.db import transaction
from django.utils import timezone

from . import monitoring
from .models import AlertState

logger = logging.getLogger(__name__)

SUBJECTS = {
    (monitoring.CONNECTION, True): "Braze sync: the connection needs attention",
    (monitoring.CONNECTION, False): "Braze sync: the connection works again",
    (monitoring.STALLED, True): "Braze sync: changes are waiting and no worker is running",
    (monitoring.STALLED, False): "Braze sync: workers are running again",
}


def alerts_check(*, now: datetime | None = None, state: monitoring.Liveness | None = None) -> list[str]:
    """E-mail each alarm that was raised or cleared since the last check; returns the subjects sent."""
    now = now or timezone.now()
    alarms = monitoring.sync_alarms(now=now, state=state)
    AlertState.objects.bulk_create([AlertState(name=alarm.name) for alarm in alarms], ignore_conflicts=True)
    sent = []
    for alarm in alarms:
        subject = SUBJECTS[(alarm.name, alarm.active)]
        try:
            with transaction.atomic():
                flipped = AlertState.objects.filter(name=alarm.name, active=not alarm.active).update(
                    active=alarm.active, changed_at=now, message=alarm.message[:2000])
                if not flipped:
                    continue
                mail_admins(subject, alarm.message, fail_silently=False)
        except Exception:
            logger.exception("Could not send the alert %r; the next check tries again.", subject)
            continue
        log = logger.error if alarm.active else logger.info
        log("%s: %s", subject, alarm.message)
        sent.append(subject)
    return sent
