"""Add webhook secret rotation, endpoint mapping settings and pending API fetches.

Revision ID: 7a3c1e9b2d40
Revises: 5591e2c1e52b
Create Date: 2026-12-04 21:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "7a3c1e9b2d40"
down_revision: str | None = "5591e2c1e52b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.add_column(
        "webhook_endpoints",
        sa.Column("secrets", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
    )
    op.execute("UPDATE webhook_endpoints SET secrets = ARRAY[secret] WHERE secret IS NOT NULL")
    op.drop_column("webhook_endpoints", "secret")
    op.add_column(
        "webhook_endpoints",
        sa.Column("timezone", sa.Text(), server_default="UTC", nullable=False),
    )
    op.add_column("webhook_endpoints", sa.Column("token", sa.Text(), nullable=True))
    op.add_column("webhook_endpoints", sa.Column("api_base_url", sa.Text(), nullable=True))
    op.add_column("webhook_endpoints", sa.Column("api_token", sa.Text(), nullable=True))

    op.add_column(
        "webhook_deliveries",
        sa.Column("fetch", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )
    op.add_column(
        "webhook_deliveries",
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column(
        "webhook_deliveries",
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        "ix_webhook_deliveries_pending_next_attempt_at",
        "webhook_deliveries",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_index(
        "ix_webhook_deliveries_pending_next_attempt_at",
        table_name="webhook_deliveries",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_column("webhook_deliveries", "next_attempt_at")
    op.drop_column("webhook_deliveries", "attempts")
    op.drop_column("webhook_deliveries", "fetch")

    op.drop_column("webhook_endpoints", "api_token")
    op.drop_column("webhook_endpoints", "api_base_url")
    op.drop_column("webhook_endpoints", "token")
    op.drop_column("webhook_endpoints", "timezone")
    op.add_column("webhook_endpoints", sa.Column("secret", sa.Text(), nullable=True))
    op.execute("UPDATE webhook_endpoints SET secret = secrets[1]")
    op.drop_column("webhook_endpoints", "secrets")
