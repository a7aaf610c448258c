"""`manage.py braze_fields`: the loyalty fields a mapping can name, each with its Braze type."""

import json

from django.core.management.base import BaseCommand

from braze_integration.fields import loyalty_fields


class Command(BaseCommand):
    help = (
        "List every loyalty field that can be mapped to a Braze attribute (profile, points, tier, purchases, "
        "computed values, the program's custom fields) with its Braze type, one a line."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--json", action="store_true", help='print a JSON list of {"field", "type", "label"}'
        )

    def handle(self, *args, **options):
        fields = list(loyalty_fields().values())
        if options["json"]:
            rows = [{"field": f.key, "type": f.braze_type.value, "label": f.label} for f in fields]
            self.stdout.write(json.dumps(rows, indent=2))
            return
        width = max(len(f.key) for f in fields)
        for f in fields:
            self.stdout.write(f"{f.key:<{width}}  {f.braze_type.value:<16}  {f.label}")
