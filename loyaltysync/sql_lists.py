"""A long list of keys as one SQL parameter, for ``filter(pk__in=...)`` in the sync's hot path, and
the rows of a ``values()`` query read in one go (``value_rows``).

Django prepares an ``IN (%s, %s, ...)`` list one parameter at a time (a lookup, a conversion and a
placeholder per element): for the 600 members of a claim that is most of the query's cost. Here the
list goes as one parameter: a PostgreSQL array (``unnest``) or a JSON array (SQLite's ``json_each``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from django.db import connection, connections
from django.db.models import QuerySet
from django.db.models.expressions import Col, RawSQL


def one_param(values: Iterable[int] | Iterable[str], *, sql_type: str = "bigint") -> RawSQL:
    """``values`` as a subquery for an ``__in`` lookup; ``sql_type`` is the PostgreSQL element type
    (``bigint`` for keys, ``text`` for strings)."""
    if connection.vendor == "postgresql":
        return RawSQL(f"SELECT unnest(%s::{sql_type}[])", [array_literal(values)])
    return RawSQL("SELECT value FROM json_each(%s)", [json.dumps(list(values))])


def one_param_table(values: Iterable[int] | Iterable[str], *, sql_type: str = "bigint") -> tuple[str, list[Any]]:
    """``values`` as a table with one column, ``ids.value``, for ``INSERT ... SELECT ... FROM`` it:
    the SQL of the FROM clause and its one parameter. (On SQLite, an ``INSERT ... SELECT`` followed by
    ``ON CONFLICT`` needs a ``WHERE`` clause in the SELECT; ``WHERE true`` will do.)"""
    if connection.vendor == "postgresql":
        return f"unnest(%s::{sql_type}[]) AS ids(value)", [array_literal(values)]
    return "json_each(%s) AS ids", [json.dumps(list(values))]


def array_literal(values: Iterable[int] | Iterable[str]) -> str:
    """PostgreSQL's text form of an array of integers or strings (``{1,2}``, ``{"a","b\\"c"}``), for a
    parameter cast to an array type. psycopg adapts a list element by element, with a regular
    expression on each: for a claim's 600 keys that took longer than the query. Every string is
    quoted, with its backslashes and double quotes escaped, so no element can be read as two, as
    ``NULL`` or as a nested array."""
    parts = []
    for value in values:
        if type(value) is int:
            parts.append(str(value))
        elif isinstance(value, str):
            parts.append('"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"')
        else:
            raise TypeError(f"array_literal takes integers and strings, not {type(value).__name__}")
    return "{" + ",".join(parts) + "}"


def value_rows(queryset: QuerySet, names: Sequence[str]) -> list[dict[str, Any]]:
    """``list(queryset.values(*names))``, for the hot path: the same SQL and the same converters as
    Django's (a date from SQLite's text, a JSON column parsed), applied in one loop over rows fetched
    at once, without the iterator's layers per row and per value (they took longer than the
    converters). Plain fields only: no annotations, no extra select."""
    compiler = queryset.values_list(*names).query.get_compiler(queryset.db)
    sql, params = compiler.as_sql()
    if len(compiler.select) != len(names) or not all(isinstance(column[0], Col) for column in compiler.select):
        raise ValueError(f"value_rows reads plain fields only, not {names!r}")
    converters = [(index, functions, expression) for index, (functions, expression)
                  in compiler.get_converters([column[0] for column in compiler.select]).items()]
    db = connections[queryset.db]
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        fetched = cursor.fetchall()
    rows = []
    for values in fetched:
        if converters:
            values = list(values)
            for index, functions, expression in converters:
                value = values[index]
                for convert in functions:
                    value = convert(value, expression, db)
                values[index] = value
        rows.append(dict(zip(names, values, strict=True)))
    return rows
