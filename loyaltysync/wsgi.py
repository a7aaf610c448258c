"""WSGI entry point (gunicorn loyaltysync.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "loyaltysync.settings")

application = get_wsgi_application()
