"""Who else writes a Braze custom attribute besides the field mappings.

A field mapping owns its attribute name: the sync remembers the value it last sent under that name
and sends again only when the member's value changes. Anything else writing the same name (a
workflow's "sync data" action) would leave Braze holding a value the sync believes it never
overwrote, and a resync would see nothing to do. So a name belongs to one writer only.

The integration never imports the workflows: the workflows app registers a claimant here when it
starts, and a mapping asks every claimant whether its name is taken.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

# Attribute names -> {name: who sends it, in words, e.g. 'workflow "Bonus", action 1 (sync data)'}.
Claimant = Callable[[Collection[str]], dict[str, str]]

_claimants: list[Claimant] = []


def attribute_claimant_register(claimant: Claimant) -> None:
    """Add ``claimant`` to those asked by ``attribute_claims`` (once, however often it is registered)."""
    if claimant not in _claimants:
        _claimants.append(claimant)


def attribute_claims(names: Collection[str]) -> dict[str, str]:
    """Which of ``names`` something other than a field mapping sends, and what sends it."""
    claims: dict[str, str] = {}
    for claimant in _claimants:
        for name, owner in claimant(names).items():
            claims.setdefault(name, owner)
    return claims
