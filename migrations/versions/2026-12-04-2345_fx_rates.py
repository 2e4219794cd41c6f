"""Add tenant-supplied exchange rates and the function that reports a missing rate.

Revision ID: e5a9c3f70b12
Revises: b7e41d9c0a63
Create Date: 2026-12-04 23:45:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e5a9c3f70b12"
down_revision: str | None = "b7e41d9c0a63"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Report statements call this function where an amount needs a rate that is not stored, so
# the statement fails instead of summing a wrong total. SQLSTATE RVFX1 is this service's
# own code; the message text is only for logs, and the application reads DETAIL and HINT.
CREATE_MISSING_RATE_FUNCTION = """
CREATE FUNCTION revcov_missing_fx_rate(currency text, revenue_at timestamptz)
RETURNS numeric
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    RAISE EXCEPTION USING
        ERRCODE = 'RVFX1',
        MESSAGE = format('no %s rate in force at %s', currency, revenue_at),
        DETAIL = currency,
        HINT = to_char(revenue_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"');
END
$$
"""


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_table(
        "fx_rates",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("quote_currency", sa.String(length=3), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("effective_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rate", sa.Numeric(precision=21, scale=12), nullable=False),
        sa.Column(
            "recorded_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("rate > 0", name=op.f("ck_fx_rates_rate_positive")),
        sa.CheckConstraint(
            "currency <> quote_currency", name=op.f("ck_fx_rates_currency_not_quote_currency")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_fx_rates_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id", "quote_currency", "currency", "effective_at", name=op.f("pk_fx_rates")
        ),
    )
    op.execute(CREATE_MISSING_RATE_FUNCTION)


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute("DROP FUNCTION revcov_missing_fx_rate(text, timestamptz)")
    op.drop_table("fx_rates")
