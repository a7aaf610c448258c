"""The program's rules: points per currency unit, pending days, expiry, the program currency and the rates
of other currencies.

Staff own them: the newest ``ProgramSettings`` row is in force, and every change adds a row (the history).
Until the first row is saved, the ``LOYALTY_*`` environment variables are the rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ..currencies import currency_problem, rate_parse
from ..models import ProgramSettings


@dataclass(frozen=True)
class ProgramRules:
    """The rules in force; ``rates`` holds only valid positive rates, by ISO code."""

    points_per_unit: Decimal
    pending_days: int
    expiry_days: int
    currency: str
    rates: dict[str, Decimal] = field(default_factory=dict)

    def rate_of(self, currency: str) -> Decimal | None:
        """Value of one unit of ``currency`` in the program currency; ``None`` when there is no rate."""
        if currency == self.currency:
            return Decimal(1)
        return self.rates.get(currency)


def _rates(raw: Any) -> dict[str, Decimal]:
    rates = {}
    for code, value in (raw or {}).items():
        rate = rate_parse(value)
        if isinstance(code, str) and rate is not None and currency_problem(code) is None:
            rates[code.upper()] = rate
    return rates


def program_rules() -> ProgramRules:
    """The rules in force: the newest saved settings, or the environment's defaults."""
    current = ProgramSettings.objects.order_by("-created_at", "-id").first()
    if current is not None:
        return ProgramRules(
            points_per_unit=current.points_per_unit,
            pending_days=current.pending_days,
            expiry_days=current.expiry_days,
            currency=current.currency,
            rates=_rates(current.rates),
        )
    defaults = settings.LOYALTY  # read on every call, so tests and deployments may change it
    return ProgramRules(
        points_per_unit=Decimal(str(defaults["POINTS_PER_CURRENCY_UNIT"])),
        pending_days=int(defaults["PENDING_DAYS"]),
        expiry_days=int(defaults["POINTS_EXPIRY_DAYS"]),
        currency=str(defaults.get("CURRENCY", "EUR")).upper(),
        rates=_rates(defaults.get("CURRENCY_RATES")),
    )


def program_settings_change(
    *,
    points_per_unit: Decimal,
    pending_days: int,
    expiry_days: int,
    currency: str,
    rates: dict[str, Any] | None = None,
    note: str = "",
    changed_by: str = "",
) -> ProgramSettings:
    """Put new rules in force by adding a version; earlier versions stay as the history.

    Raises ``django.core.exceptions.ValidationError`` naming the field (currency, rates, ...).
    """
    version = ProgramSettings(
        points_per_unit=points_per_unit,
        pending_days=pending_days,
        expiry_days=expiry_days,
        currency=currency,
        rates=rates or {},
        note=note,
        created_by=changed_by,
        created_at=timezone.now(),
    )
    version.full_clean()
    with transaction.atomic():
        version.save()
    return version
