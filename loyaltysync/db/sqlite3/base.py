"""SQLite, as Django ships it, with one change: a transaction waits for the write lock in short steps.

Every transaction here begins with ``BEGIN IMMEDIATE`` (``transaction_mode``), so it is where a writer
waits while another process (the web server, a worker) holds SQLite's single write lock. SQLite's own
busy handler sleeps at least 1 ms, then 2, then 5, ...: a save that meets a worker's transaction of
200 µs waits 1 ms, and 3 ms if that transaction was a little longer. Here ``BEGIN IMMEDIATE`` is tried
without SQLite's wait and again after 50 µs, 100 µs, 200 µs, ... (never more than 2 ms apart), up
to the connection's timeout, after which it fails as SQLite does ("database is locked"). Rails
made the same change for the same reason (``busy_handler_timeout`` of the sqlite3 gem).

Statements outside a transaction (reads, and writes in autocommit) keep SQLite's busy handler.

Checkpoints (copying the write-ahead log into the database file, 2-3 ms for SQLite's 1,000 pages)
fall on whichever commit crosses the mark. Web processes and commands wait for 4,000 pages and the
django-q2 workers for 1,000, so under load a worker's commit does the copying and a user's save
rarely does (``worker_process_started``). Without a worker, a web process checkpoints at 4,000 pages
(16 MB of log): still bounded, and still within one hash table of SQLite's log index, so reads do
not slow down.
"""

import time

from django.db.backends.sqlite3 import base

FIRST_WAIT = 0.00005
LONGEST_WAIT = 0.002
WEB_CHECKPOINT_PAGES = 4000
WORKER_CHECKPOINT_PAGES = 1000
CHECKPOINT_PAGES = WEB_CHECKPOINT_PAGES  # this process's


def worker_process_started(**kwargs) -> None:
    """django-q2's ``post_spawn``: this process's commits take on the checkpoints."""
    global CHECKPOINT_PAGES
    CHECKPOINT_PAGES = WORKER_CHECKPOINT_PAGES
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        if isinstance(conn, DatabaseWrapper) and conn.connection is not None:
            conn.connection.execute(f"PRAGMA wal_autocheckpoint = {CHECKPOINT_PAGES}")


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def lock_timeout(self) -> float:
        """Seconds a transaction waits for the write lock: the ``timeout`` option, as for SQLite's own wait."""
        return float(self.settings_dict["OPTIONS"].get("timeout", 5.0))

    def get_new_connection(self, conn_params):
        conn = super().get_new_connection(conn_params)
        conn.execute(f"PRAGMA wal_autocheckpoint = {CHECKPOINT_PAGES}")
        return conn

    def _start_transaction_under_autocommit(self):
        if self.transaction_mode is None:  # a deferred BEGIN takes no lock
            return super()._start_transaction_under_autocommit()
        with self.wrap_database_errors:
            self._begin_waiting_in_short_steps(f"BEGIN {self.transaction_mode}")

    def _begin_waiting_in_short_steps(self, begin: str) -> None:
        raw = self.connection
        timeout = self.lock_timeout
        raw.execute("PRAGMA busy_timeout = 0")
        try:
            deadline = time.monotonic() + timeout
            wait = FIRST_WAIT
            while True:
                try:
                    raw.execute(begin)
                    return
                except self.Database.OperationalError as error:
                    if getattr(error, "sqlite_errorcode", 0) & 0xFF != self.Database.SQLITE_BUSY:  # or BUSY_RECOVERY
                        raise
                    if time.monotonic() + wait > deadline:
                        raise
                time.sleep(wait)
                wait = min(wait * 2, LONGEST_WAIT)
        finally:
            raw.execute(f"PRAGMA busy_timeout = {round(timeout * 1000)}")
