from app.errors import NotFoundError


class ContactNotFoundError(NotFoundError):
    code = "contact-not-found"
