"""The sandbox's REST API keys and what each may do, as Braze's key permissions decide.

A key in `api_keys` has every permission the sandbox knows; a key in `track_only_keys` may call
`/users/track` but not `/users/delete`; a key in `no_permission_keys` is known but may do
neither (403, where an unknown key gets 401). When a key is in several sets, the narrower wins.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

USERS_TRACK = "users.track"
USERS_DELETE = "users.delete"
Permission = Literal["users.track", "users.delete"]
KeyAccess = Literal["granted", "no_permission", "invalid"]


@dataclass(frozen=True, slots=True)
class KeyRing:
    """An immutable set of keys with their permissions; replaced whole when keys change."""

    api_keys: frozenset[str] = frozenset()
    track_only_keys: frozenset[str] = frozenset()
    no_permission_keys: frozenset[str] = frozenset()

    def access(self, key: str | None, permission: Permission = USERS_TRACK) -> KeyAccess:
        """Whether `key` may use `permission`, lacks it, or is not a key at all."""
        if key is None:
            return "invalid"
        if key in self.no_permission_keys:
            return "no_permission"
        if key in self.track_only_keys:
            return "granted" if permission == USERS_TRACK else "no_permission"
        return "granted" if key in self.api_keys else "invalid"

    def replaced(
        self,
        *,
        api_keys: Iterable[str] | None = None,
        track_only_keys: Iterable[str] | None = None,
        no_permission_keys: Iterable[str] | None = None,
    ) -> KeyRing:
        """A copy with the given sets replaced (None keeps a set as it is)."""
        return KeyRing(
            api_keys=self.api_keys if api_keys is None else key_set(api_keys, "api_keys"),
            track_only_keys=(
                self.track_only_keys
                if track_only_keys is None
                else key_set(track_only_keys, "track_only_keys")
            ),
            no_permission_keys=(
                self.no_permission_keys
                if no_permission_keys is None
                else key_set(no_permission_keys, "no_permission_keys")
            ),
        )

    def as_dict(self) -> dict[str, list[str]]:
        """The sets as sorted lists, as `/sandbox/keys` shows them."""
        return {
            "api_keys": sorted(self.api_keys),
            "track_only_keys": sorted(self.track_only_keys),
            "no_permission_keys": sorted(self.no_permission_keys),
        }


def key_set(keys: Iterable[str], name: str) -> frozenset[str]:
    """An immutable copy of a collection of keys; one bare string is refused, not split."""
    if isinstance(keys, str):
        raise ValueError(f"{name} must be a collection of keys, not one string")
    return frozenset(keys)
