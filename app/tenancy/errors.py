from app.errors import (
    ConflictError,
    ForbiddenError,
    NotFoundError,
    UnauthorizedError,
    UnprocessableError,
)


class InvalidApiKeyError(UnauthorizedError):
    code = "invalid-api-key"


class InvalidThresholdsError(UnprocessableError):
    code = "invalid-account-nps-thresholds"


class MissingScopeError(ForbiddenError):
    code = "missing-scope"


class ApiKeyNotFoundError(NotFoundError):
    code = "api-key-not-found"


class LastAdminKeyError(ConflictError):
    code = "last-admin-key"


class InvalidShareTokenError(UnauthorizedError):
    code = "invalid-share-token"


class ShareTokenNotFoundError(NotFoundError):
    code = "share-token-not-found"
