"""Pure validation of one Braze `POST /users/delete` request body.

A body names the users to delete with exactly one identifier kind: `external_ids` (strings),
`user_aliases` ({alias_name, alias_label}) or `braze_ids` (strings), at most 50 of them. Braze's
`email_addresses` and `phone_numbers` kinds are refused with a message saying the sandbox does
not implement them. The result is the store keys of the profiles to delete (see
`store.profile_key`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .store import profile_key
from .validation import MAX_INPUT_LENGTH_MESSAGE, RequestRejected

MAX_DELETE_IDENTIFIERS = 50
IDENTIFIER_KINDS = ("external_ids", "user_aliases", "braze_ids")
UNSUPPORTED_KINDS = ("email_addresses", "phone_numbers")
_KINDS_TEXT = "'external_ids', 'user_aliases' or 'braze_ids'"


@dataclass(frozen=True, slots=True)
class DeleteRequest:
    """The identifier kind a delete request used and the store keys of the profiles it names."""

    kind: str
    profile_keys: tuple[str, ...]


def delete_identifier_count(body: Any) -> int:
    """How many identifiers a body names, whatever their validity (for stats and logs)."""
    if not isinstance(body, dict):
        return 0
    return sum(len(value) for kind in IDENTIFIER_KINDS if isinstance(value := body.get(kind), list))


def validate_delete_request(body: Any, *, max_identifiers: int = MAX_DELETE_IDENTIFIERS) -> DeleteRequest:
    """Check a decoded `/users/delete` body; raises `RequestRejected` (400) naming the problem."""
    if not isinstance(body, dict):
        raise RequestRejected(f"The request body must be a JSON object with one of {_KINDS_TEXT}.")
    unsupported = [kind for kind in UNSUPPORTED_KINDS if kind in body]
    if unsupported:
        raise RequestRejected(
            f"'{unsupported[0]}' is not supported by the sandbox; use {_KINDS_TEXT}."
        )
    present = [kind for kind in IDENTIFIER_KINDS if kind in body]
    if not present:
        raise RequestRejected(f"One of {_KINDS_TEXT} must be provided.")
    if len(present) > 1:
        raise RequestRejected(
            f"Only one of {_KINDS_TEXT} may be provided per request, received "
            + ", ".join(f"'{kind}'" for kind in present)
            + "."
        )
    kind = present[0]
    identifiers = body[kind]
    if not isinstance(identifiers, list) or not identifiers:
        raise RequestRejected(f"'{kind}' must be a non-empty array.")
    if len(identifiers) > max_identifiers:
        raise RequestRejected(
            f"{MAX_INPUT_LENGTH_MESSAGE}: '{kind}' holds {len(identifiers)} identifiers, "
            f"at most {max_identifiers} are allowed per request."
        )
    keys = tuple(_profile_key(kind, position, identifier) for position, identifier in enumerate(identifiers))
    return DeleteRequest(kind=kind, profile_keys=keys)


def _profile_key(kind: str, position: int, identifier: Any) -> str:
    where = f"{kind}[{position}]"
    if kind == "user_aliases":
        if (
            not isinstance(identifier, dict)
            or set(identifier) != {"alias_name", "alias_label"}
            or not all(isinstance(part, str) and part for part in identifier.values())
        ):
            raise RequestRejected(
                f"'{where}' must be an object with non-empty 'alias_name' and 'alias_label' strings."
            )
        return profile_key({"user_alias": identifier})
    if not isinstance(identifier, str) or not identifier:
        raise RequestRejected(f"'{where}' must be a non-empty string.")
    return profile_key({"external_id" if kind == "external_ids" else "braze_id": identifier})
