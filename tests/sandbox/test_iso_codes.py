"""The ISO code lists standard attributes are checked against."""

from __future__ import annotations

from braze_integration.sandbox.iso_codes import COUNTRY_CODES, LANGUAGE_CODES


def test_given_country_codes_then_all_249_assigned_alpha_2_codes_in_upper_case() -> None:
    assert len(COUNTRY_CODES) == 249
    assert all(len(code) == 2 and code.isupper() for code in COUNTRY_CODES)
    assert {"DE", "NO", "US", "GB", "SS", "XK"} & COUNTRY_CODES == {"DE", "NO", "US", "GB", "SS"}


def test_given_language_codes_then_183_two_letter_codes_in_lower_case() -> None:
    assert len(LANGUAGE_CODES) == 183
    assert all(len(code) == 2 and code.islower() for code in LANGUAGE_CODES)
    assert {"en", "nb", "de", "zh"} <= LANGUAGE_CODES and "bh" not in LANGUAGE_CODES
