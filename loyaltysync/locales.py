"""Countries and languages: which codes are ISO 3166-1 alpha-2 and ISO 639-1.

``pycountry`` holds both lists, so ``ZZ`` or ``zz`` is refused when it is typed, by the member's form,
the API and the imports, rather than left out of every request to Braze later. The Braze integration
checks any field mapped to ``country`` or ``language`` against the same lists.
"""

from __future__ import annotations

import functools
import re

import pycountry

COUNTRY_RULE = "must be an ISO 3166-1 alpha-2 country code, e.g. DE"
LANGUAGE_RULE = "must be an ISO 639-1 language code, e.g. en or en-GB"

_LANGUAGE_TAG = re.compile(r"[A-Za-z]{2}([-_][A-Za-z0-9]{1,8})*")  # BCP 47: en, en-GB, zh-Hant-TW


@functools.cache
def iso_countries() -> frozenset[str]:
    """Every ISO 3166-1 alpha-2 code."""
    return frozenset(country.alpha_2 for country in pycountry.countries)


@functools.cache
def iso_languages() -> frozenset[str]:
    """Every ISO 639-1 code. "bh" (Bihari) was withdrawn from the standard; Braze does not take it."""
    return frozenset(language.alpha_2 for language in pycountry.languages if hasattr(language, "alpha_2")) - {"bh"}


def language_of(tag: str) -> str | None:
    """The ISO 639-1 language of a tag such as ``en`` or ``en-GB`` (lower case), or ``None`` when the
    tag has no such language."""
    if not _LANGUAGE_TAG.fullmatch(tag):
        return None
    code = tag[:2].lower()
    return code if code in iso_languages() else None
