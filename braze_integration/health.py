"""The Braze connection as a readiness check (``/readyz``, see ``loyaltysync.health``)."""

from __future__ import annotations

import dataclasses

from health_check.exceptions import ServiceUnavailable

from loyaltysync.health import ThreadedCheck

from .models import Connection, ConnectionStatus


@dataclasses.dataclass
class BrazeConnection(ThreadedCheck):
    """Fails while the active connection needs attention (Braze refused the key, the host is gone, ...).

    No active connection (the sync is switched off) and a connection not yet checked pass: nothing is
    failing. The message never quotes the connection's URL, key or Braze's words (see the admin)."""

    def check(self) -> None:
        connection = Connection.objects.filter(active=True).only("status").first()
        if connection is not None and connection.status == ConnectionStatus.NEEDS_ATTENTION:
            raise ServiceUnavailable("the Braze connection needs attention (see the connection in the admin)")
