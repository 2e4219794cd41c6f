from app.errors import ConflictError, UnprocessableError


class IdempotencyKeyInFlightError(ConflictError):
    code = "idempotency-key-in-flight"


class IdempotencyKeyReusedError(UnprocessableError):
    code = "idempotency-key-reused"
