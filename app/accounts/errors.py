from app.errors import NotFoundError


class AccountNotFoundError(NotFoundError):
    code = "account-not-found"
