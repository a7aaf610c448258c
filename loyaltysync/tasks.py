"""django-q2 tasks: thin wrappers that call one service each (scheduled by ``services.schedules_ensure``)."""

from . import services


def points_release_pending() -> int:
    """Hourly: make pending points spendable once their return period has passed."""
    return services.points_release_pending()


def points_expire_due() -> int:
    """Hourly: expire earned points past their expiry date."""
    return services.points_expire_due()


def tier_floors_expire() -> int:
    """Hourly: members whose tier given by hand has ended get the tier the rules give."""
    from . import tiers

    return tiers.tier_floors_expire()
