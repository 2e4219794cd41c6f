from app.errors import NotFoundError, UnprocessableError


class AccountNotFoundError(NotFoundError):
    code = "account-not-found"


class CurrencyMismatchError(UnprocessableError):
    code = "currency-mismatch"
