from collections.abc import Sequence
from typing import TYPE_CHECKING

from app.errors import ConflictError, InvalidField, NotFoundError, UnprocessableError

if TYPE_CHECKING:
    from app.accounts.schemas import RevenueImportResult


class AccountNotFoundError(NotFoundError):
    code = "account-not-found"


class RevenueCsvInvalidError(UnprocessableError):
    """A CSV file that cannot be read: its options, header, encoding or quoting."""

    code = "invalid-csv"


class RevenueCsvRejectedError(UnprocessableError):
    """A CSV file with invalid lines, rejected whole; `result` counts and lists them."""

    code = "csv-lines-rejected"

    def __init__(
        self, detail: str, *, errors: Sequence[InvalidField], result: "RevenueImportResult"
    ) -> None:
        super().__init__(detail, errors=errors)
        self.result = result


class AccountMergedError(ConflictError):
    """A write to an account that was merged away and now exists only as its survivor's alias."""

    code = "account-merged"


class HierarchyCycleError(UnprocessableError):
    code = "account-hierarchy-cycle"
    title = "Account hierarchy cycle"


class HierarchyTooDeepError(UnprocessableError):
    code = "account-hierarchy-too-deep"
    title = "Account hierarchy too deep"


class InvalidMergeError(UnprocessableError):
    code = "invalid-account-merge"
    title = "Invalid account merge"
