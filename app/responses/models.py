import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    SmallInteger,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base


class SurveyResponse(Base):
    """One NPS response, as its latest version from the source platform.

    `account_ref` is the account id the response named; `account_id` is set once an account
    with that external id exists (at write time, or later when the account is created).
    """

    __tablename__ = "responses"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    source: Mapped[str] = mapped_column(Text)
    response_id: Mapped[str] = mapped_column(Text)
    account_ref: Mapped[str | None] = mapped_column(Text)
    account_id: Mapped[int | None] = mapped_column(BigInteger)
    email: Mapped[str | None] = mapped_column(Text)
    score: Mapped[int | None] = mapped_column(SmallInteger)
    comment: Mapped[str | None] = mapped_column(Text)
    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    source_updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    __table_args__ = (
        UniqueConstraint("tenant_id", "source", "response_id"),
        ForeignKeyConstraint(
            ["tenant_id", "account_id"],
            ["accounts.tenant_id", "accounts.id"],
        ),
        CheckConstraint("score BETWEEN 0 AND 10", name="score_range"),
        Index("ix_responses_tenant_id_submitted_at", "tenant_id", "submitted_at"),
        Index(
            "ix_responses_tenant_id_account_id_submitted_at",
            "tenant_id",
            "account_id",
            "submitted_at",
        ),
        Index(
            "ix_responses_unmatched_account_ref",
            "tenant_id",
            "account_ref",
            postgresql_where=text("account_id IS NULL AND account_ref IS NOT NULL"),
        ),
    )
