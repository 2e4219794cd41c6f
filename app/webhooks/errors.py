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
    """A verified delivery that cannot become a response; it is stored as failed with the reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
