"""`python manage.py braze_sandbox`: run the local Braze sandbox in the foreground.

A thin wrapper: the options and the server come from `braze_integration.sandbox.cli`, which the
plain `python -m braze_integration.sandbox` entry point shares.
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from braze_integration.sandbox.cli import add_arguments, config_from_options, serve_until_interrupted


class Command(BaseCommand):
    help = "Run a local Braze sandbox (POST /users/track, /users/delete) until Ctrl-C."
    # The sandbox needs neither the database nor the system checks.
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: ArgumentParser) -> None:
        add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            config = config_from_options(options)
        except ValueError as err:
            raise CommandError(str(err)) from err
        serve_until_interrupted(config, announce=self.stdout.write)
