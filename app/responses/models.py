import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Computed,
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


class MatchRule(StrEnum):
    """Rule that found a response's account; the rules are tried in this order."""

    ACCOUNT_EXTERNAL_ID = "account_external_id"
    CONTACT = "contact"
    EMAIL_DOMAIN = "email_domain"
    MANUAL = "manual"


class SurveyResponse(Base):
    """One NPS response, as its latest version from the source platform.

    `account_ref` is the account id the response named. `account_id` is the account it counts
    for, and `matched_by` the rule that found it; both are null while no rule finds one.
    `erased_at` is set when an erasure request removed the email and comment.
    `merged_from_account_id` is the merged-away account a response belonged to before an
    account merge moved it (or before the match rules sent it on to the survivor), so
    periods before the merge still count it for that account.
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
    merged_from_account_id: Mapped[int | None] = mapped_column(BigInteger)
    email: Mapped[str | None] = mapped_column(Text)
    score: Mapped[int | None] = mapped_column(SmallInteger)
    comment: Mapped[str | None] = mapped_column(Text)
    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    source_updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    matched_by: Mapped[str | None] = mapped_column(Text)
    erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The lower-cased email and its domain, which contacts and account domains are matched to.
    email_key: Mapped[str | None] = mapped_column(
        Text, Computed("nullif(lower(btrim(email)), '')", persisted=True)
    )
    email_domain: Mapped[str | None] = mapped_column(
        Text, Computed("lower(substring(btrim(email) from '@([^@]+)$'))", persisted=True)
    )

    __table_args__ = (
        UniqueConstraint("tenant_id", "source", "response_id"),
        ForeignKeyConstraint(
            ["tenant_id", "account_id"],
            ["accounts.tenant_id", "accounts.id"],
        ),
        ForeignKeyConstraint(
            ["tenant_id", "merged_from_account_id"],
            ["accounts.tenant_id", "accounts.id"],
        ),
        CheckConstraint("score BETWEEN 0 AND 10", name="score_range"),
        CheckConstraint(
            "matched_by IN ('account_external_id', 'contact', 'email_domain', 'manual')",
            name="matched_by_rule",
        ),
        CheckConstraint(
            "(account_id IS NULL) = (matched_by IS NULL)", name="matched_by_with_account"
        ),
        Index("ix_responses_tenant_id_submitted_at", "tenant_id", "submitted_at"),
        Index(
            "ix_responses_tenant_id_account_id_submitted_at",
            "tenant_id",
            "account_id",
            "submitted_at",
        ),
        Index("ix_responses_tenant_id_account_ref", "tenant_id", "account_ref"),
        Index("ix_responses_tenant_id_email_key", "tenant_id", "email_key"),
        Index("ix_responses_tenant_id_email_domain", "tenant_id", "email_domain"),
        Index(
            "ix_responses_unmatched",
            "tenant_id",
            "id",
            postgresql_where=text("account_id IS NULL"),
        ),
    )
