"""Currencies: which codes are ISO 4217, and how rates of other currencies are written and checked.

``pycountry`` holds the ISO 4217 list, so a typo such as ``EURO`` or ``EUX`` is refused by name.
"""

from __future__ import annotations

import functools
from decimal import Decimal, InvalidOperation
from typing import Any

import pycountry

MAX_RATE = Decimal("1000000")


@functools.cache
def iso_currencies() -> frozenset[str]:
    """Every ISO 4217 alphabetic code."""
    return frozenset(currency.alpha_3 for currency in pycountry.currencies)


def currency_problem(code: Any) -> str | None:
    """Why ``code`` is not an ISO 4217 currency code, or ``None`` when it is."""
    if not isinstance(code, str) or len(code) != 3 or not code.isascii() or not code.isalpha():
        return "must be a 3-letter ISO 4217 currency code, e.g. EUR."
    if code.upper() not in iso_currencies():
        return f"{code.upper()!r} is not an ISO 4217 currency code."
    return None


def rate_parse(value: Any) -> Decimal | None:
    """A rate as a positive Decimal, or ``None`` when it is not one (numbers as JSON numbers or strings)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        rate = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    if not rate.is_finite() or rate <= 0 or rate > MAX_RATE:
        return None
    return rate


def rates_problems(rates: Any, *, program_currency: str) -> list[str]:
    """Every problem of a ``{"USD": "0.92"}`` rates object, as sentences naming the currency."""
    if rates in (None, ""):
        return []
    if not isinstance(rates, dict):
        return ['must be an object of currency code to rate, e.g. {"USD": "0.92"}.']
    problems = []
    for code, value in rates.items():
        if problem := currency_problem(code):
            problems.append(f"{code}: {problem}")
        elif code != code.upper():
            problems.append(f"{code}: write the code in capitals ({code.upper()}).")
        elif code == program_currency:
            problems.append(f"{code}: is the program currency (its rate is 1).")
        elif rate_parse(value) is None:
            problems.append(f"{code}: the rate must be a positive number of at most {MAX_RATE}.")
    return problems
