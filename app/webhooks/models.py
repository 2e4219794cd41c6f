import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base


class WebhookEndpoint(Base):
    """A URL a survey platform posts to, with its secrets and the field mapping for that form.

    Secrets are kept readable because verifying an HMAC needs the key itself. Several are
    active while a secret is being rotated.
    """

    __tablename__ = "webhook_endpoints"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[str] = mapped_column(Text, primary_key=True)
    source: Mapped[str] = mapped_column(Text)
    secrets: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    account_field: Mapped[str] = mapped_column(Text)
    score_field: Mapped[str | None] = mapped_column(Text)
    comment_field: Mapped[str | None] = mapped_column(Text)
    timezone: Mapped[str] = mapped_column(Text, server_default="UTC")
    token: Mapped[str | None] = mapped_column(Text)
    api_base_url: Mapped[str | None] = mapped_column(Text)
    api_token: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class WebhookDeliveryKey(Base):
    """The delivery key of a stored delivery, which drops a repeat of it.

    The row outlives its raw delivery by at least `DELIVERY_KEY_MARGIN`
    (`app.webhooks.partitions`), because raw deliveries go with their monthly partition
    once it passes the retention period.
    """

    __tablename__ = "webhook_delivery_keys"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(Text, primary_key=True)
    delivery_key: Mapped[str] = mapped_column(Text, primary_key=True)
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "endpoint_id"],
            ["webhook_endpoints.tenant_id", "webhook_endpoints.id"],
            ondelete="CASCADE",
        ),
        Index("ix_webhook_delivery_keys_received_at", "received_at"),
    )


class WebhookDelivery(Base):
    """One verified delivery, stored raw before it is mapped, once per platform delivery id.

    The table is partitioned by month of `received_at` (see `app.webhooks.partitions`).
    """

    __tablename__ = "webhook_deliveries"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    id: Mapped[int] = mapped_column(
        BigInteger,
        server_default=text("nextval('webhook_deliveries_id_seq')"),
        primary_key=True,
    )
    endpoint_id: Mapped[str] = mapped_column(Text)
    delivery_key: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text)
    event_type: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    response_id: Mapped[str | None] = mapped_column(Text)
    fetch: Mapped[dict[str, str] | None] = mapped_column(JSONB)
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    content_type: Mapped[str | None] = mapped_column(Text)
    headers: Mapped[dict[str, Any]] = mapped_column(JSONB)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), primary_key=True
    )
    # Set when an erasure request emptied `body` and `headers`.
    erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "endpoint_id"],
            ["webhook_endpoints.tenant_id", "webhook_endpoints.id"],
            ondelete="CASCADE",
        ),
        Index("ix_webhook_deliveries_tenant_id_status", "tenant_id", "status"),
        Index(
            "ix_webhook_deliveries_pending_next_attempt_at",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
        {"postgresql_partition_by": "RANGE (received_at)"},
    )
