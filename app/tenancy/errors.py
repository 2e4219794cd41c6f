from app.errors import UnauthorizedError, UnprocessableError


class InvalidApiKeyError(UnauthorizedError):
    code = "invalid-api-key"


class InvalidThresholdsError(UnprocessableError):
    code = "invalid-account-nps-thresholds"
