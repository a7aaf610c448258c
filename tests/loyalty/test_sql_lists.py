"""One parameter for a long list: the rows it selects are exactly the listed ones, on either database."""

from __future__ import annotations

import pytest
from django.db import connection

from loyaltysync.models import Member
from loyaltysync.sql_lists import array_literal, one_param, one_param_table, value_rows

pytestmark = pytest.mark.django_db

# Strings PostgreSQL's array syntax would otherwise read as something else: a delimiter, a quote, an
# escape, braces, NULL, blanks at the edges, an empty string.
AWKWARD = ['a,b', 'say "hi"', "back\\slash", "{x}", "NULL", " padded ", "", "ünï", "tail\\"]


def test_selects_exactly_the_listed_keys():
    members = [Member.objects.create(member_id=f"L-{n}") for n in range(5)]
    wanted = [members[0].pk, members[3].pk, members[4].pk]
    found = Member.objects.filter(pk__in=one_param(wanted)).values_list("pk", flat=True)
    assert sorted(found) == sorted(wanted)
    assert not Member.objects.filter(pk__in=one_param([])).exists()


def test_strings_come_back_unchanged():
    for value in AWKWARD:
        Member.objects.create(member_id=f"id {value}")
    Member.objects.create(member_id="not listed")
    listed = [f"id {value}" for value in AWKWARD]
    found = Member.objects.filter(member_id__in=one_param(listed, sql_type="text")).values_list("member_id", flat=True)
    assert sorted(found) == sorted(listed)


def test_the_table_form_yields_every_value():
    source, params = one_param_table(AWKWARD, sql_type="text")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT ids.value FROM {source}", params)
        assert sorted(row[0] for row in cursor.fetchall()) == sorted(AWKWARD)


def test_array_literal_refuses_what_it_cannot_write():
    assert array_literal([1, 22, -3]) == "{1,22,-3}"
    with pytest.raises(TypeError, match="bool"):
        array_literal([True])
    with pytest.raises(TypeError, match="NoneType"):
        array_literal([None])


def test_value_rows_are_what_values_gives():
    from braze_integration.fields import loyalty_fields

    Member.objects.create(member_id="V-1", first_name="Ana", birth_date="1990-02-03", email="a@example.com",
                          custom_fields={"tags": ["a", "b"], "n": {"x": 1}})
    Member.objects.create(member_id="V-2")
    names = sorted({column for field in loyalty_fields().values() for column in field.columns} | {"id"})
    queryset = Member.objects.filter(member_id__in=one_param(["V-1", "V-2"], sql_type="text")).order_by("pk")
    assert value_rows(queryset, names) == list(queryset.values(*names))
    assert value_rows(queryset, names)[0]["birth_date"].year == 1990  # converted, not SQLite's text


def test_value_rows_refuses_what_is_not_a_plain_field():
    from django.db.models import F

    with pytest.raises(ValueError, match="plain fields only"):
        value_rows(Member.objects.annotate(twice=F("id") * 2), ["twice", "id"])
