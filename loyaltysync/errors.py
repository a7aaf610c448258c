"""The loyalty domain's exceptions: one small tree, raised by services and selectors.

Each error has a stable ``code`` and names the input it is about (``field``, a dotted path such as
``data.total`` or ``custom_fields.shoe_size``). The HTTP status belongs to the API layer
(``loyaltysync.api.exceptions``), not here.
"""

from __future__ import annotations


class LoyaltyError(Exception):
    """Base of every error the loyalty services raise on purpose."""

    code = "loyalty_error"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code

    @property
    def errors(self) -> dict[str, list[str]]:
        """Field path -> messages; empty when the error is not about one field."""
        return {self.field: [self.message]} if self.field else {}

    @property
    def error_codes(self) -> dict[str, list[str]]:
        """Field path -> a machine-readable code per message of ``errors``, in the same order."""
        return {path: [self.code] * len(messages) for path, messages in self.errors.items()}


class MemberNotFound(LoyaltyError):
    """No member has this id (the API answers 404)."""

    code = "member_not_found"


class MemberAlreadyExists(LoyaltyError):
    """A member with this id exists already (409)."""

    code = "member_exists"


class MemberErased(LoyaltyError):
    """The member id belongs to a member who was erased; it is never used again (409)."""

    code = "member_erased"


class MemberInactive(LoyaltyError):
    """The member is opted out (or inactive) and cannot earn points (409)."""

    code = "member_inactive"


class DuplicateTransaction(LoyaltyError):
    """A checkout with this ``transaction_id`` was recorded before (409)."""

    code = "duplicate_transaction"


class InsufficientPoints(LoyaltyError):
    """Spending more than the member's spendable points (409: the input is well-formed, the balance refuses it)."""

    code = "insufficient_points"


class InvalidData(LoyaltyError):
    """Input that fails validation. Carries every problem found: field path -> messages."""

    code = "invalid"

    def __init__(
        self,
        errors: dict[str, str | list[str]],
        *,
        message: str | None = None,
        codes: dict[str, list[str]] | None = None,
    ) -> None:
        self.field_errors: dict[str, list[str]] = {
            path: [problem] if isinstance(problem, str) else list(problem) for path, problem in errors.items()
        }
        # Per message, e.g. "required", "min_value", "max_length"; "invalid" where a check gave none.
        codes = codes or {}
        self.field_codes: dict[str, list[str]] = {
            path: [*codes.get(path, [])[: len(problems)], *["invalid"] * (len(problems) - len(codes.get(path, [])))]
            for path, problems in self.field_errors.items()
        }
        if message is None:
            message = "; ".join(
                f"{path}: {' '.join(problems)}" for path, problems in self.field_errors.items()
            )
        super().__init__(message or "Invalid input.", field=next(iter(self.field_errors), None))

    @property
    def errors(self) -> dict[str, list[str]]:
        return self.field_errors

    @property
    def error_codes(self) -> dict[str, list[str]]:
        return self.field_codes

    def under(self, prefix: str) -> InvalidEventData:
        """The same problems with every path placed under ``prefix`` (e.g. ``data.``), as event errors."""
        return InvalidEventData(
            {f"{prefix}{path}": problems for path, problems in self.field_errors.items()},
            codes={f"{prefix}{path}": codes for path, codes in self.field_codes.items()},
        )


class InvalidEventData(InvalidData):
    """An event whose action or data is invalid; paths look like ``data.items[0].price``."""


class IdempotencyKeyReused(LoyaltyError):
    """An idempotency key sent again with a different request (422): the first request's answer stands."""

    code = "idempotency_key_reused"
