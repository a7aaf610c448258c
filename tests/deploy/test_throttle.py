"""The API throttle's budget is one per token across processes (gunicorn workers, machines), because its
counts live in the shared cache: the database cache, or Redis when REDIS_URL is set."""

from __future__ import annotations

import json

from django.contrib.auth import get_user_model
from django.core.cache import caches
from rest_framework.authtoken.models import Token

from .conftest import database_url, manage

REQUESTS = """
import json
from django.test import Client
client = Client(HTTP_AUTHORIZATION="Token {token}")
print(json.dumps([client.get("/api/v1/members/").status_code for _ in range({count})]))
"""


def statuses_from_a_new_process(token: str, count: int) -> list[int]:
    result = manage(
        "shell", "-c", REQUESTS.format(token=token, count=count),
        DATABASE_URL=database_url(), API_THROTTLE_RATE="4/min", ALLOWED_HOSTS="testserver",
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_two_processes_share_one_budget_per_token(transactional_db):
    user = get_user_model().objects.create_superuser("throttled", "t@example.com", "x-long-password-1")
    token = Token.objects.create(user=user).key

    first = statuses_from_a_new_process(token, 3)
    second = statuses_from_a_new_process(token, 2)

    assert first == [200, 200, 200]
    assert second == [200, 429]  # a per-process budget would have allowed 4 more here


def test_the_cache_is_one_every_process_reaches():
    assert type(caches["default"]).__name__ in {"DatabaseCache", "RedisCache"}
