from datetime import datetime

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
    action: str = Field(examples=["response.deleted", "person.erased", "account.merged"])
    subject_sha256: str | None = Field(
        description="For an erasure, the hex SHA-256 digest of the lower-cased email."
    )
    source: str | None = Field(description="For a deletion, the response's source.")
    response_id: str | None = Field(description="For a deletion, the response's id.")
    counts: dict[str, int] = Field(description="Rows changed, per kind.")
    details: dict[str, str] = Field(
        description="For an account merge, the external ids of the merged-away account "
        "(`account_external_id`), of `into` and of the survivor, and `effective_at`."
    )
    created_at: datetime
