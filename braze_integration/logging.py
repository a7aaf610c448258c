"""Keeping the Braze API key out of logs and error reports.

``SecretString`` hides a decrypted key in reprs. What it cannot cover are plain-string copies of the
key: the ``Authorization`` header built from it (a local variable in every frame of ``requests``), a
key typed into the Connect form (the POST data, the form's ``cleaned_data``). Django's error e-mails
and debug pages show every frame's local variables and the POST data, so settings wire in:

- ``SecretsReporterFilter`` (``DEFAULT_EXCEPTION_REPORTER_FILTER``): hides POST parameters and local
  variables whose names look secret (``new_api_key``, ``api_key``, ``key``, ``headers["Authorization"]``),
  by the rule Django applies to settings.
- ``SecretsExceptionReporter`` (``DEFAULT_EXCEPTION_REPORTER``): replaces every key this process has
  used in the finished report (exception messages included).
- ``RedactSecretsFilter`` (on the log handlers): does the same for log records and their tracebacks.

The client registers its key when it is built (``secret_register``): a key that never went into a
header is only ever held as a ``SecretString``.
"""

from __future__ import annotations

import html
import logging
import re
from typing import Any

from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

REDACTED = "********"
# Shorter values are not treated as secrets: replacing them would garble unrelated text.
_MIN_SECRET_LENGTH = 8
_MAX_SECRETS = 64
_secrets: dict[str, None] = {}  # insertion-ordered, newest last


class RegisteredSecret(str):
    """A secret that shows itself as asterisks in reprs (what ``vars()`` and debuggers print)."""

    def __repr__(self) -> str:
        return f"'{REDACTED}'"


def secret_register(value: str) -> str:
    """Remember ``value`` as a secret to redact from logs and error reports; returns it, masked in reprs."""
    text = str(value)
    if len(text) >= _MIN_SECRET_LENGTH:
        _secrets.pop(text, None)
        _secrets[text] = None
        while len(_secrets) > _MAX_SECRETS:
            del _secrets[next(iter(_secrets))]
    return RegisteredSecret(text)


def redact(text: str) -> str:
    """``text`` with every registered secret (also as escaped in reprs and HTML) replaced."""
    if not _secrets or not text:
        return text
    for secret in reversed(_secrets):
        for form in {secret, repr(secret)[1:-1], html.escape(secret)}:
            if form in text:
                text = text.replace(form, REDACTED)
    return text


class RedactSecretsFilter(logging.Filter):
    """A handler filter: a record's message, arguments and traceback lose any registered secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _secrets:
            return True
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        if record.exc_info and not record.exc_text:
            # Formatters reuse exc_text once it is set, so the traceback is formatted (and cleaned) once.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


# Names of local variables that hold secrets in this code base and its libraries. Dict keys (headers,
# cleaned_data, POST) go by Django's wider rule for settings (API|AUTH|TOKEN|KEY|SECRET|PASS|...).
_SECRET_VARIABLE = re.compile(r"api_?key|secret|passw|authoriz|credential|^key$|^token$", re.I)


class SecretsReporterFilter(SafeExceptionReporterFilter):
    """Django's filter, plus: secret-looking POST parameters and local variables are hidden without
    needing ``@sensitive_post_parameters`` / ``@sensitive_variables`` on every view that might see one."""

    def get_post_parameters(self, request):
        return self._cleansed(request, super().get_post_parameters(request))

    def get_cleansed_multivaluedict(self, request, multivaluedict):
        return self._cleansed(request, super().get_cleansed_multivaluedict(request, multivaluedict))

    def _cleansed(self, request, params):
        if not self.is_active(request) or not params:
            return params
        hidden = [name for name in params if self.hidden_settings.search(str(name))]
        if hidden:
            params = params.copy()
            for name in hidden:
                params[name] = self.cleansed_substitute
        return params

    def get_traceback_frame_variables(self, request, tb_frame):
        variables = super().get_traceback_frame_variables(request, tb_frame)
        if not self.is_active(request):
            return variables
        return [(name, self._cleansed_variable(name, value)) for name, value in variables]

    def _cleansed_variable(self, name: str, value: Any) -> Any:
        if _SECRET_VARIABLE.search(name):
            return self.cleansed_substitute
        if isinstance(value, dict | list | tuple):
            return self.cleanse_setting("", value)  # dict keys by name, recursively
        return value


class SecretsExceptionReporter(ExceptionReporter):
    """Django's report with every registered secret replaced, wherever it ended up."""

    def get_traceback_html(self):
        return redact(super().get_traceback_html())

    def get_traceback_text(self):
        return redact(super().get_traceback_text())
