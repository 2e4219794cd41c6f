import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, DateTime, ForeignKey, Identity, LargeBinary, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base


class AuditAction(StrEnum):
    RESPONSE_DELETED = "response.deleted"
    PERSON_ERASED = "person.erased"
    ACCOUNT_MERGED = "account.merged"


class AuditEvent(Base):
    """A record of a deletion, erasure or account merge; it contains none of the data it removed.

    An erasure is identified by `subject_hash`, the SHA-256 digest of the lower-cased email.
    The digest cannot be turned back into the email, but anyone who reads it can confirm a
    guessed email. A deletion is identified by `source` and `response_id`. `counts` holds
    the number of rows changed per kind. `details` names the accounts of a merge and
    the instant it takes effect.
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
    details: Mapped[dict[str, str]] = mapped_column(JSONB, server_default="{}")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
