"""Create many random members quickly (for benchmarks): ``./manage.py seed_members --count 100000 --batch 5000``.

Members are inserted with ``bulk_create`` (no ``post_save``), so ``members_changed`` is sent for each
batch, as the loyalty domain promises its listeners. They have profiles and custom field values
(for the defined custom fields) but no points: balances stay consistent with the (empty) ledger.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid

from django.core.management.base import BaseCommand, CommandError
from django.db import connection as db_connection
from django.db import transaction
from django.utils import timezone
from tqdm import tqdm

from loyaltysync.models import CustomField, FieldType, Member, MemberStatus, Tier
from loyaltysync.signals import members_changed

FIRST_NAMES = ["Ada", "Grace", "Linus", "Margaret", "Alan", "Katherine", "Dennis", "Barbara", "Ken", "Hedy"]
LAST_NAMES = [
    "Lovelace",
    "Hopper",
    "Torvalds",
    "Hamilton",
    "Turing",
    "Johnson",
    "Ritchie",
    "Liskov",
    "Lamarr",
]
COUNTRIES = [("DE", "de"), ("AT", "de"), ("CH", "de"), ("FR", "fr"), ("GB", "en"), ("US", "en")]


def random_custom_value(rng: random.Random, field_type: str, now: dt.datetime):
    """A random value of ``field_type`` as it is stored."""
    match field_type:
        case FieldType.STRING:
            return rng.choice(["Berlin", "Hamburg", "Munich", "Vienna", "Online"])
        case FieldType.INTEGER:
            return rng.randint(0, 100)
        case FieldType.FLOAT:
            return round(rng.uniform(0, 500), 2)
        case FieldType.BOOLEAN:
            return rng.random() < 0.5
        case FieldType.DATE:
            return (now.date() - dt.timedelta(days=rng.randint(0, 20_000))).isoformat()
        case FieldType.DATETIME:
            moment = now - dt.timedelta(seconds=rng.randint(0, 90 * 86400))
            return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")
        case FieldType.ARRAY:
            return rng.sample(["running", "yoga", "tennis", "hiking", "cycling"], rng.randint(0, 3))
        case FieldType.OBJECT:
            return {"channel": rng.choice(["email", "sms", "push"])}
        case FieldType.ARRAY_OF_OBJECTS:
            return [
                {"name": rng.choice(FIRST_NAMES), "age": rng.randint(1, 18)} for _ in range(rng.randint(0, 2))
            ]
    return None


class Command(BaseCommand):
    help = "Create N random members with bulk_create (for benchmarks); sends members_changed per batch."

    def add_arguments(self, parser):
        parser.add_argument("--count", type=int, default=1000, help="How many members (default 1000).")
        parser.add_argument(
            "--batch", type=int, default=5000, help="Members per INSERT batch (default 5000)."
        )
        parser.add_argument("--prefix", default="", help="Member id prefix (default: seed-<random>-).")
        parser.add_argument("--seed", type=int, default=None, help="Random seed, for repeatable data.")

    def handle(self, *args, count: int, batch: int, prefix: str, seed: int | None, **options):
        if count < 1 or batch < 1:
            raise CommandError("--count and --batch must be positive.")
        rng = random.Random(seed)
        prefix = prefix or f"seed-{uuid.UUID(int=rng.getrandbits(128)).hex[:8]}-"
        if Member.objects.filter(member_id__startswith=prefix).exists():
            raise CommandError(f"Members with the prefix {prefix!r} exist already; choose another --prefix.")
        custom_fields = list(CustomField.objects.values_list("key", "type"))
        entry_tier = Tier.objects.filter(points_threshold__lte=0).order_by("-points_threshold").first()
        now = timezone.now()
        created_total = 0
        with tqdm(total=count, unit="member", disable=options["verbosity"] < 1) as progress:
            for start in range(0, count, batch):
                size = min(batch, count - start)
                members = [
                    self._member(rng, f"{prefix}{start + offset + 1}", custom_fields, entry_tier, now)
                    for offset in range(size)
                ]
                with transaction.atomic():
                    created = Member.objects.bulk_create(members, batch_size=batch)
                    ids = [member.pk for member in created]
                    if None in ids:  # databases without RETURNING: look the ids up
                        ids = list(
                            Member.objects.filter(member_id__in=[m.member_id for m in members]).values_list(
                                "pk", flat=True
                            )
                        )
                    members_changed.send(sender=Member, member_ids=ids, fields=None)
                created_total += len(ids)
                progress.update(size)
        if db_connection.vendor == "postgresql":
            # After a bulk load the planner has no statistics until autovacuum comes by (up to a minute
            # later) and scans where an index would do; PostgreSQL's docs advise ANALYZE after populating.
            with db_connection.cursor() as cursor:
                cursor.execute(f"ANALYZE {Member._meta.db_table}")
        self.stdout.write(f"Created {created_total} members with ids {prefix}1..{prefix}{count}.")

    @staticmethod
    def _member(rng, member_id, custom_fields, entry_tier, now) -> Member:
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        country, language = rng.choice(COUNTRIES)
        status = rng.choices(MemberStatus.values, weights=[90, 5, 5])[0]
        joined = now - dt.timedelta(seconds=rng.randint(0, 3 * 365 * 86400))
        return Member(
            member_id=member_id,
            first_name=first,
            last_name=last,
            email=f"{member_id}@example.com",
            phone=f"+49 30 {rng.randint(1000000, 9999999)}",
            birth_date=dt.date(rng.randint(1950, 2005), rng.randint(1, 12), rng.randint(1, 28)),
            gender=rng.choice(["female", "male", "other", ""]),
            language=language,
            country=country,
            status=status,
            opted_in_at=joined,
            opted_out_at=now if status == MemberStatus.OPTED_OUT else None,
            tier=entry_tier,
            tier_since=joined if entry_tier else None,
            custom_fields={
                key: random_custom_value(rng, field_type, now) for key, field_type in custom_fields
            },
        )
