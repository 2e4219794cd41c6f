from app.errors import ConflictError, NotFoundError, UnprocessableError


class AccountNotFoundError(NotFoundError):
    code = "account-not-found"


class AccountMergedError(ConflictError):
    """A write to an account that was merged away and now exists only as its survivor's alias."""

    code = "account-merged"


class HierarchyCycleError(UnprocessableError):
    code = "account-hierarchy-cycle"
    title = "Account hierarchy cycle"


class InvalidMergeError(UnprocessableError):
    code = "invalid-account-merge"
    title = "Invalid account merge"
