from app.errors import ConflictError, NotFoundError, UnauthorizedError, UnprocessableError


class EndpointNotFoundError(NotFoundError):
    code = "webhook-endpoint-not-found"


class DeliveryNotFoundError(NotFoundError):
    code = "webhook-delivery-not-found"


class DeliveryErasedError(ConflictError):
    code = "webhook-delivery-erased"


class InvalidSignatureError(UnauthorizedError):
    code = "invalid-signature"


class UnknownSourceError(UnprocessableError):
    code = "unknown-source"


class MappingError(Exception):
    """A verified delivery that cannot become a response; it is stored as failed with the reason.

    `log_reason` is the reason without any value from the payload, for log lines, because
    a payload value may be an email or a comment. It defaults to `reason`.
    """

    def __init__(self, reason: str, *, log_reason: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.log_reason = reason if log_reason is None else log_reason
