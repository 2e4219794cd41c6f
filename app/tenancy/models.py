import json
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    Numeric,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base

# Scopes an API key can carry. `read` allows the GET routes, `ingest` the writes of accounts,
# contacts and responses, `admin` the tenant settings, webhook endpoints, API keys, deletion
# and erasure. The README lists the scope of every route.
API_KEY_SCOPES = ("ingest", "read", "admin")

# Revenue tiers of a new tenant: each tier starts at `min_revenue` (inclusive, in the
# reporting currency) and ends where the next one starts.
DEFAULT_REVENUE_TIERS: list[dict[str, str]] = [
    {"label": "under-25M", "min_revenue": "0"},
    {"label": "25M-250M", "min_revenue": "25000000"},
    {"label": "250M-and-over", "min_revenue": "250000000"},
]


class Tenant(Base):
    """A company using the service; every other row belongs to exactly one tenant."""

    __tablename__ = "tenants"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    timezone: Mapped[str] = mapped_column(Text, server_default="UTC")
    reporting_currency: Mapped[str] = mapped_column(String(3), server_default="USD")
    coverage_target: Mapped[Decimal] = mapped_column(Numeric(5, 4), server_default="0.8")
    default_rollup: Mapped[str] = mapped_column(Text, server_default="latest")
    fiscal_year_start_month: Mapped[int] = mapped_column(SmallInteger, server_default="1")
    account_nps_safe_above: Mapped[int] = mapped_column(SmallInteger, server_default="30")
    account_nps_at_risk_below: Mapped[int] = mapped_column(SmallInteger, server_default="0")
    revenue_tiers: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB,
        server_default=text(f"'{json.dumps(DEFAULT_REVENUE_TIERS)}'::jsonb"),
    )
    min_responses: Mapped[int] = mapped_column(Integer, server_default="1")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint("coverage_target > 0 AND coverage_target <= 1", name="coverage_target"),
        CheckConstraint(
            "default_rollup IN ('latest', 'average', 'lowest', 'account_nps', 'decision_maker')",
            name="default_rollup",
        ),
        CheckConstraint("fiscal_year_start_month BETWEEN 1 AND 12", name="fiscal_year_start_month"),
        CheckConstraint(
            "account_nps_at_risk_below BETWEEN -100 AND 100 "
            "AND account_nps_safe_above BETWEEN -100 AND 100 "
            "AND account_nps_at_risk_below <= account_nps_safe_above",
            name="account_nps_thresholds",
        ),
        CheckConstraint("min_responses BETWEEN 1 AND 1000000", name="min_responses"),
    )


class ApiKey(Base):
    """An API key, stored only as the SHA-256 digest of the key."""

    __tablename__ = "api_keys"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    key_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    prefix: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    scopes: Mapped[list[str]] = mapped_column(
        ARRAY(Text), server_default=text("'{ingest,read,admin}'::text[]")
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("tenant_id", "key_hash"),
        CheckConstraint(
            "cardinality(scopes) > 0 AND scopes <@ ARRAY['ingest', 'read', 'admin']::text[]",
            name="scopes",
        ),
    )


class ShareToken(Base):
    """A read-only token for the coverage widget, stored only as its SHA-256 digest.

    It opens `/v1/widgets/coverage.svg` of its tenant and nothing else, so a wall display
    can show the widget without holding an API key.
    """

    __tablename__ = "share_tokens"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    prefix: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (UniqueConstraint("tenant_id", "token_hash"),)
