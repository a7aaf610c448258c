"""The JSON log line (``LOG_FORMAT=json``): python-json-logger's formatter, with one change.

A handler filter (``braze_integration.logging.RedactSecretsFilter``) formats a record's traceback into
``exc_text`` and removes secrets from it. ``logging.Formatter`` prints ``exc_text`` when it is set;
python-json-logger formats ``exc_info`` again, which would bring the secrets back. This formatter
prints the traceback the filters left.
"""

from __future__ import annotations

import logging

from pythonjsonlogger.json import JsonFormatter as BaseJsonFormatter


class JsonFormatter(BaseJsonFormatter):
    def format(self, record: logging.LogRecord) -> str:
        if not (record.exc_info and record.exc_text):
            return super().format(record)
        exc_info, record.exc_info = record.exc_info, None
        try:
            return super().format(record)
        finally:
            record.exc_info = exc_info
