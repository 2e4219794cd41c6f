"""Add the tenant settings for revenue tiers and the minimum NPS sample.

Revision ID: b7e41d9c0a63
Revises: 9d2b6f0a4c18
Create Date: 2026-12-04 23:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "b7e41d9c0a63"
down_revision: str | None = "9d2b6f0a4c18"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT_REVENUE_TIERS = (
    '[{"label": "under-25M", "min_revenue": "0"}, '
    '{"label": "25M-250M", "min_revenue": "25000000"}, '
    '{"label": "250M-and-over", "min_revenue": "250000000"}]'
)


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.add_column(
        "tenants",
        sa.Column(
            "revenue_tiers",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text(f"'{DEFAULT_REVENUE_TIERS}'::jsonb"),
            nullable=False,
        ),
    )
    op.add_column(
        "tenants",
        sa.Column("min_responses", sa.Integer(), server_default="1", nullable=False),
    )
    op.create_check_constraint(
        op.f("ck_tenants_min_responses"),
        "tenants",
        "min_responses BETWEEN 1 AND 1000000",
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_constraint(op.f("ck_tenants_min_responses"), "tenants", type_="check")
    op.drop_column("tenants", "min_responses")
    op.drop_column("tenants", "revenue_tiers")
