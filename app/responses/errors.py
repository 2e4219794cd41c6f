from app.errors import NotFoundError


class ResponseNotFoundError(NotFoundError):
    code = "response-not-found"
