from app.errors import ConflictError, UnauthorizedError, UnprocessableError


class InvalidApiKeyError(UnauthorizedError):
    code = "invalid-api-key"


class CurrencyInUseError(ConflictError):
    code = "currency-in-use"


class InvalidThresholdsError(UnprocessableError):
    code = "invalid-account-nps-thresholds"
