import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base

# Up to 10^18 with 4 decimal places; input is capped at 10^15 and at the currency's minor unit.
MONEY = Numeric(22, 4)


class Account(Base):
    """A customer account of a tenant, known by the tenant's own (CRM) id.

    `parent_id` names the account's parent in the tenant's hierarchy, which has no cycles.
    A merged-away account keeps its row, so its external id still resolves:
    `merged_into_id` is the account named in the merge, `merged_at` the instant the merge
    takes effect and `survivor_id` the live account at the end of the merge chain.
    """

    __tablename__ = "accounts"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    external_id: Mapped[str] = mapped_column(Text)
    name: Mapped[str | None] = mapped_column(Text)
    region: Mapped[str | None] = mapped_column(Text)
    industry: Mapped[str | None] = mapped_column(Text)
    owner: Mapped[str | None] = mapped_column(Text)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    parent_id: Mapped[int | None] = mapped_column(BigInteger)
    merged_into_id: Mapped[int | None] = mapped_column(BigInteger)
    merged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    survivor_id: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        UniqueConstraint("tenant_id", "external_id"),
        *(
            ForeignKeyConstraint(["tenant_id", name], ["accounts.tenant_id", "accounts.id"])
            for name in ("parent_id", "merged_into_id", "survivor_id")
        ),
        *(
            Index(
                f"ix_accounts_tenant_id_{name}",
                "tenant_id",
                name,
                postgresql_where=text(f"{name} IS NOT NULL"),
            )
            for name in ("parent_id", "merged_into_id", "survivor_id")
        ),
        CheckConstraint(
            "(merged_into_id IS NULL) = (merged_at IS NULL) "
            "AND (merged_into_id IS NULL) = (survivor_id IS NULL)",
            name="merge_complete",
        ),
        CheckConstraint("parent_id IS DISTINCT FROM id", name="not_own_parent"),
    )


class RevenueRecord(Base):
    """An account's revenue from `effective_at` on, until a record with a later `effective_at`.

    An amount of 0 means the account has no revenue from then on (churned).
    """

    __tablename__ = "revenue_records"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    effective_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    amount: Mapped[Decimal] = mapped_column(MONEY)
    currency: Mapped[str] = mapped_column(String(3))
    recorded_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "account_id"],
            ["accounts.tenant_id", "accounts.id"],
            ondelete="CASCADE",
        ),
        CheckConstraint("amount >= 0", name="amount_not_negative"),
    )


class AccountDomain(Base):
    """An email domain of an account: respondents whose email is at this domain belong to it.

    Several accounts may list one domain; such a domain then matches no response.
    """

    __tablename__ = "account_domains"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    domain: Mapped[str] = mapped_column(Text, primary_key=True)
    account_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "account_id"],
            ["accounts.tenant_id", "accounts.id"],
            ondelete="CASCADE",
        ),
        Index("ix_account_domains_tenant_id_account_id", "tenant_id", "account_id"),
    )
