"""Build ``loyaltysync/fixtures/demo.json``: tiers, custom fields and members whose balances come from real events.

The data is made through the services (opt-ins, checkouts, refunds, point adds and spends, the
expiry and release jobs) inside a transaction that is rolled back after it has been written out,
so every balance matches its ledger. Run it on an empty database, e.g.

    DATABASE_URL=sqlite:////tmp/demo.sqlite3 ./manage.py migrate
    DATABASE_URL=sqlite:////tmp/demo.sqlite3 ./manage.py loyalty_demo_fixture --output loyaltysync/fixtures/demo.json
"""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from pathlib import Path

from django.core import serializers
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from loyaltysync import services
from loyaltysync.errors import LoyaltyError
from loyaltysync.models import (
    CustomAction,
    CustomField,
    FieldType,
    LoyaltyEvent,
    Member,
    PointsTransaction,
    Tier,
)

TIERS = [
    ("Bronze", 0, "1.00", "Collect points on every purchase; birthday voucher."),
    ("Silver", 500, "1.25", "25% more points; free standard shipping."),
    ("Gold", 2000, "1.50", "50% more points; free express shipping; early access to sales."),
    ("Platinum", 5000, "2.00", "Double points; personal shopper; free returns; exclusive events."),
]
CUSTOM_FIELDS = [
    ("favourite_store", "Favourite store", FieldType.STRING, "The store the member visits most."),
    ("shoe_size", "Shoe size (EU)", FieldType.INTEGER, ""),
    ("avg_basket", "Average basket", FieldType.FLOAT, "Average checkout total, in the shop's currency."),
    ("newsletter", "Newsletter", FieldType.BOOLEAN, "Subscribed to the newsletter."),
    ("anniversary_date", "Anniversary", FieldType.DATE, "Wedding or other anniversary."),
    ("last_visit_at", "Last store visit", FieldType.DATETIME, ""),
    ("interests", "Interests", FieldType.ARRAY, "Product categories the member likes."),
    ("preferences", "Preferences", FieldType.OBJECT, "Contact and style preferences."),
    ("children", "Children", FieldType.ARRAY_OF_OBJECTS, "Name and birth year of each child."),
]
FIRST_NAMES = [
    "Ada",
    "Grace",
    "Linus",
    "Margaret",
    "Alan",
    "Katherine",
    "Dennis",
    "Barbara",
    "Ken",
    "Frances",
    "Edsger",
    "Radia",
    "Donald",
    "Hedy",
    "Tim",
    "Sophie",
    "John",
    "Joan",
    "Niklaus",
    "Anita",
]
LAST_NAMES = [
    "Lovelace",
    "Hopper",
    "Torvalds",
    "Hamilton",
    "Turing",
    "Johnson",
    "Ritchie",
    "Liskov",
    "Thompson",
    "Allen",
    "Dijkstra",
    "Perlman",
    "Knuth",
    "Lamarr",
    "Berners-Lee",
    "Wilson",
    "Backus",
    "Clarke",
]
STORES = ["Berlin Mitte", "Hamburg Altona", "Munich Centre", "Vienna Ring", "Zurich HB", "Online"]
INTERESTS = ["running", "hiking", "yoga", "tennis", "cycling", "swimming", "fashion", "outdoor"]
PRODUCTS = [
    ("P-100", "Running shoe", 119.0),
    ("P-101", "Trail shoe", 139.0),
    ("P-200", "Sports socks", 12.5),
    ("P-300", "Rain jacket", 189.0),
    ("P-301", "Fleece", 79.9),
    ("P-400", "Yoga mat", 39.0),
    ("P-500", "Water bottle", 19.9),
    ("P-600", "Backpack 30l", 99.0),
    ("P-700", "Tennis racket", 159.0),
]
COUNTRIES = [
    ("DE", "de", "EUR"),
    ("AT", "de", "EUR"),
    ("CH", "de", "CHF"),
    ("FR", "fr", "EUR"),
    ("GB", "en", "GBP"),
]


class Command(BaseCommand):
    help = "Build the demo fixture (tiers, custom fields, members with consistent events and ledger)."

    def add_arguments(self, parser):
        parser.add_argument("--output", default="loyaltysync/fixtures/demo.json")
        parser.add_argument("--members", type=int, default=40)
        parser.add_argument("--seed", type=int, default=2026)

    def handle(self, *args, output: str, members: int, seed: int, **options):
        if Member.objects.exists() or Tier.objects.exists() or CustomField.objects.exists():
            raise CommandError("Run this on an empty database: the fixture's ids must start at 1.")
        loyalty = {
            "POINTS_PER_CURRENCY_UNIT": 1.0,
            "PENDING_DAYS": 14,
            "POINTS_EXPIRY_DAYS": 365,
            "BULK_EVENTS_MAX": 100,
            "CURRENCY": "EUR",
            "CURRENCY_RATES": {"CHF": "1.05", "GBP": "1.17"},
        }
        with override_settings(LOYALTY=loyalty), transaction.atomic():
            self._build(random.Random(seed), members)
            objects = [
                *Tier.objects.order_by("pk"),
                *CustomField.objects.order_by("pk"),
                *Member.objects.order_by("pk"),
                *LoyaltyEvent.objects.order_by("pk"),
                *PointsTransaction.objects.order_by("pk"),
                *CustomAction.objects.order_by("pk"),
            ]
            Path(output).parent.mkdir(parents=True, exist_ok=True)
            Path(output).write_text(serializers.serialize("json", objects, indent=1) + "\n")
            counts = (Member.objects.count(), LoyaltyEvent.objects.count(), PointsTransaction.objects.count())
            transaction.set_rollback(True)
        self.stdout.write(
            f"Wrote {output}: {counts[0]} members, {counts[1]} events, {counts[2]} ledger rows."
        )

    def _build(self, rng: random.Random, count: int) -> None:
        for order, (name, threshold, multiplier, benefits) in enumerate(TIERS):
            Tier.objects.create(
                name=name,
                points_threshold=threshold,
                multiplier=Decimal(multiplier),
                order=order,
                benefits=benefits,
            )
        for key, label, field_type, help_text in CUSTOM_FIELDS:
            CustomField.objects.create(key=key, label=label, type=field_type, help_text=help_text)
        CustomAction.objects.create(name="store_visit", description="A visit to one of the shops (data.store).")

        now = timezone.now().replace(microsecond=0)
        timeline = []  # (when, member_id, action, data): run in time order so balances evolve as in life
        for number in range(1, count + 1):
            timeline.extend(self._member_story(rng, number, now))
        timeline.sort(key=lambda entry: entry[0])
        for when, member_id, action, data, source in timeline:
            try:
                services.event_record(
                    member_id=member_id, action=action, data=data, source=source, occurred_at=when
                )
            except LoyaltyError as error:  # e.g. a spend the balance does not allow: skipped, as a shop would
                self.stderr.write(f"skipped {action} for {member_id}: {error.message}")
        services.points_expire_due(now=now)
        services.points_release_pending(now=now)
        for member_id in ("demo-038", "demo-039"):
            member = Member.objects.filter(member_id=member_id).first()
            if member:  # members imported before the program: inactive, no events but the profile
                services.member_update(member=member, profile={"status": "inactive"}, source="import")

    def _member_story(self, rng: random.Random, number: int, now: dt.datetime) -> list[tuple]:
        member_id = f"demo-{number:03d}"
        country, language, currency = rng.choice(COUNTRIES)
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        joined = now - dt.timedelta(days=rng.randint(20, 720), hours=rng.randint(0, 23))
        profile = {
            "first_name": first,
            "last_name": last,
            "email": f"{first}.{last}.{number}@example.com".lower(),
            "phone": f"+49 30 {rng.randint(1000000, 9999999)}" if rng.random() < 0.7 else "",
            "birth_date": dt.date(
                rng.randint(1950, 2004), rng.randint(1, 12), rng.randint(1, 28)
            ).isoformat(),
            "gender": rng.choice(["female", "male", "other", ""]),
            "language": language,
            "country": country,
            "custom_fields": self._custom_values(rng, number, now),
        }
        story = [(joined, member_id, "opt_in", profile, "api")]
        vip = number % 9 == 0
        purchases = rng.randint(8, 20) if vip else rng.randint(0, 8)
        span = (now - joined).total_seconds()
        checkouts = []
        for index in range(purchases):
            when = joined + dt.timedelta(seconds=span * (index + rng.random()) / max(purchases, 1))
            items = []
            for product_id, name, price in rng.sample(PRODUCTS, rng.randint(1, 3)):
                quantity = rng.randint(1, 2)
                items.append(
                    {
                        "product_id": product_id,
                        "product_name": name,
                        "price": price,
                        "quantity": quantity,
                        "subtotal": round(price * quantity, 2),
                    }
                )
            total = round(sum(item["subtotal"] for item in items) * (3 if vip else 1), 2)
            transaction_id = f"ORD-{number:03d}-{index + 1:02d}"
            checkouts.append((when, transaction_id, total))
            story.append(
                (
                    when,
                    member_id,
                    "checkout",
                    {"transaction_id": transaction_id, "total": total, "currency": currency, "items": items},
                    "api",
                )
            )
        if checkouts and rng.random() < 0.3:
            when, transaction_id, total = rng.choice(checkouts)
            later = min(when + dt.timedelta(days=rng.randint(1, 10)), now)
            if rng.random() < 0.5:
                story.append((later, member_id, "refund", {"transaction_id": transaction_id}, "api"))
            else:
                story.append(
                    (
                        later,
                        member_id,
                        "partial_refund",
                        {"transaction_id": transaction_id, "amount": round(total / 3, 2)},
                        "api",
                    )
                )
        if rng.random() < 0.35:
            story.append(
                (
                    joined + dt.timedelta(days=1),
                    member_id,
                    "point_add",
                    {"points": rng.choice([50, 100, 250]), "reason": "Welcome bonus"},
                    "admin",
                )
            )
        if purchases > 2 and rng.random() < 0.5:
            when = now - dt.timedelta(days=rng.randint(1, 15))
            story.append(
                (
                    when,
                    member_id,
                    "point_spend",
                    {"points": rng.choice([50, 100, 200]), "reason": "Voucher"},
                    "api",
                )
            )
        if rng.random() < 0.4:
            when = joined + dt.timedelta(seconds=span * rng.random())
            story.append((when, member_id, "store_visit", {"store": rng.choice(STORES)}, "api"))
        if number % 8 == 3:
            story.append(
                (
                    now - dt.timedelta(days=rng.randint(1, 10)),
                    member_id,
                    "opt_out",
                    {"reason": "No longer interested"},
                    "api",
                )
            )
        return story

    @staticmethod
    def _custom_values(rng: random.Random, number: int, now: dt.datetime) -> dict:
        values = {
            "favourite_store": rng.choice(STORES),
            "shoe_size": rng.randint(36, 47),
            "avg_basket": round(rng.uniform(20, 180), 2),
            "newsletter": rng.random() < 0.6,
            "anniversary_date": dt.date(
                rng.randint(1990, 2023), rng.randint(1, 12), rng.randint(1, 28)
            ).isoformat(),
            "last_visit_at": (now - dt.timedelta(days=rng.randint(1, 90))).isoformat().replace("+00:00", "Z"),
            "interests": rng.sample(INTERESTS, rng.randint(1, 3)),
            "preferences": {
                "channel": rng.choice(["email", "sms", "push"]),
                "fit": rng.choice(["slim", "regular"]),
            },
            "children": [
                {"name": rng.choice(FIRST_NAMES), "birth_year": rng.randint(2008, 2022)}
                for _ in range(rng.randint(0, 2))
            ],
        }
        # Not everybody filled in everything.
        return {key: value for key, value in values.items() if number % 5 == 0 or rng.random() < 0.75}
