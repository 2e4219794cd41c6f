from app.errors import ConflictError, UnauthorizedError


class InvalidApiKeyError(UnauthorizedError):
    code = "invalid-api-key"


class CurrencyInUseError(ConflictError):
    code = "currency-in-use"
