import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, DateTime, ForeignKey, Identity, LargeBinary, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base


class AuditAction(StrEnum):
    RESPONSE_DELETED = "response.deleted"
    PERSON_ERASED = "person.erased"
    API_KEY_CREATED = "api_key.created"
    API_KEY_REVOKED = "api_key.revoked"
    SHARE_TOKEN_CREATED = "share_token.created"
    SHARE_TOKEN_REVOKED = "share_token.revoked"
    WEBHOOK_ENDPOINT_CREATED = "webhook_endpoint.created"
    WEBHOOK_ENDPOINT_UPDATED = "webhook_endpoint.updated"
    TENANT_UPDATED = "tenant.updated"
    ACCOUNT_MERGED = "account.merged"


class AuditEvent(Base):
    """A record of an administrative action: a deletion, an erasure, an account merge, or a
    change of API keys, webhook endpoints or tenant settings. It contains none of the data
    it removed and no secret.

    An erasure is identified by `subject_hash`, the SHA-256 digest of the lower-cased email.
    The digest cannot be turned back into the email, but anyone who reads it can confirm a
    guessed email. A deletion is identified by `source` and `response_id`. `counts` holds
    the number of rows changed per kind. `actor_key_id` is the API key that made the request,
    `object_id` the API key or webhook endpoint acted on, and `details` the non-secret facts
    of the change, such as the names of changed fields or the accounts of a merge.
    """

    __tablename__ = "audit_events"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    action: Mapped[str] = mapped_column(Text)
    subject_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    source: Mapped[str | None] = mapped_column(Text)
    response_id: Mapped[str | None] = mapped_column(Text)
    counts: Mapped[dict[str, int]] = mapped_column(JSONB, server_default="{}")
    actor_key_id: Mapped[uuid.UUID | None]
    object_id: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
