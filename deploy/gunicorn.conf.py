"""gunicorn for loyaltysync: ``gunicorn --config /etc/loyaltysync/gunicorn.conf.py`` (loyaltysync-web.service).

Every value can be changed from the environment file, so the file itself can stay as shipped.
"""

import multiprocessing
import os

wsgi_app = "loyaltysync.wsgi:application"
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
# gunicorn's rule of thumb; WEB_CONCURRENCY (gunicorn's own variable) wins when set.
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))
# API calls answer in milliseconds; a request still running after this is stuck.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 30))
graceful_timeout = 30
keepalive = 5
# A fresh worker now and then keeps slow memory growth in check; the jitter keeps them from all restarting at once.
max_requests = 2000
max_requests_jitter = 200
# The TLS-terminating proxy's address: only it may set X-Forwarded-Proto.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
accesslog = "-"
errorlog = "-"
# The request id django-guid answers with, so an access line matches the application's log lines.
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms request_id=%({x-request-id}o)s'
# Workers' heartbeat files in memory, not on a disk that may stall.
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"
# gunicorn >= 27 opens a control socket under $HOME, which the unit keeps read-only; the unit's
# reload (HUP) and stop (TERM) are the controls used here.
control_socket_disable = True


def post_worker_init(worker):
    """The application is loaded: keep what it holds now out of Python's full collections
    (``loyaltysync.collector``; one of about 75 ms every few thousand saves, otherwise)."""
    from loyaltysync import collector

    collector.freeze_startup()
