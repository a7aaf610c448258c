"""Pure tests of the sandbox's keys and their permissions."""

from __future__ import annotations

import pytest

from braze_integration.sandbox.keys import USERS_DELETE, USERS_TRACK, KeyRing

RING = KeyRing(
    api_keys=frozenset({"full", "both"}),
    track_only_keys=frozenset({"tracker", "both"}),
    no_permission_keys=frozenset({"none"}),
)


@pytest.mark.parametrize(
    ("key", "track", "delete"),
    [
        ("full", "granted", "granted"),
        ("tracker", "granted", "no_permission"),
        ("both", "granted", "no_permission"),  # the narrower set wins
        ("none", "no_permission", "no_permission"),
        ("stranger", "invalid", "invalid"),
        (None, "invalid", "invalid"),
    ],
)
def test_given_key_when_access_asked_then_permission_decides(key: str | None, track: str, delete: str) -> None:
    assert RING.access(key, USERS_TRACK) == track
    assert RING.access(key, USERS_DELETE) == delete


def test_given_ring_when_one_set_replaced_then_others_kept() -> None:
    replaced = RING.replaced(track_only_keys=["new"])
    assert replaced.track_only_keys == frozenset({"new"})
    assert replaced.api_keys == RING.api_keys and replaced.no_permission_keys == RING.no_permission_keys
    assert RING.track_only_keys == frozenset({"tracker", "both"})  # the original is unchanged


def test_given_one_string_instead_of_keys_when_replaced_then_value_error_names_the_set() -> None:
    with pytest.raises(ValueError, match="track_only_keys"):
        RING.replaced(track_only_keys="oops")


def test_given_ring_when_shown_then_sorted_lists() -> None:
    assert RING.as_dict() == {
        "api_keys": ["both", "full"],
        "track_only_keys": ["both", "tracker"],
        "no_permission_keys": ["none"],
    }
