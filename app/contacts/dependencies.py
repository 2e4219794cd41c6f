from typing import Annotated

from fastapi import Depends, Path

from app.errors import InvalidField, UnprocessableError
from app.schemas import MAX_EMAIL_LENGTH, validate_email


def contact_email(
    email: Annotated[
        str,
        Path(
            max_length=MAX_EMAIL_LENGTH,
            description="The contact's email, in any letter case.",
            examples=["jane@acme.com"],
        ),
    ],
) -> str:
    try:
        return validate_email(email)
    except ValueError as error:
        raise UnprocessableError(
            f"Invalid email in the path: {error}.",
            errors=[InvalidField(location="path.email", message=str(error))],
        ) from None


ContactEmail = Annotated[str, Depends(contact_email)]
