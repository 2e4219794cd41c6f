import uuid
from datetime import datetime
from typing import Any

from pydantic import Field

from app.schemas import EmailAddress, ReadModel, WriteModel


class ErasureRequest(WriteModel):
    email: EmailAddress = Field(description="The person's email, in any letter case.")


class ErasureResult(ReadModel):
    """Counts of the rows an erasure changed; each may be 0."""

    responses: int = Field(description="Responses whose email and comment were removed.")
    webhook_deliveries: int = Field(
        description="Stored webhook deliveries whose body and headers were removed."
    )
    contact_links: int = Field(description="Links of the person's contact to accounts.")
    audit_event_id: int


class AuditEventRead(ReadModel):
    id: int
    action: str = Field(
        examples=["response.deleted", "person.erased", "api_key.created", "account.merged"]
    )
    actor_key_id: uuid.UUID | None = Field(
        description="The API key that made the request; null for actions from the command line."
    )
    object_id: str | None = Field(
        description="The API key or webhook endpoint acted on, for actions on one."
    )
    subject_sha256: str | None = Field(
        description="For an erasure, the hex SHA-256 digest of the lower-cased email."
    )
    source: str | None = Field(description="For a deletion, the response's source.")
    response_id: str | None = Field(description="For a deletion, the response's id.")
    counts: dict[str, int] = Field(description="Rows changed, per kind.")
    details: dict[str, Any] = Field(
        description="Facts of the change without secrets: the changed fields, a key's name "
        "and scopes, an endpoint's source and number of signing secrets, or the old and new "
        "tenant settings, or the accounts of a merge and when it takes effect."
    )
    created_at: datetime
