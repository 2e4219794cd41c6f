"""Add the tenant settings for roll-up rules and fiscal years.

Revision ID: 9d2b6f0a4c18
Revises: c4e8a2f61d57
Create Date: 2026-12-04 23:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9d2b6f0a4c18"
down_revision: str | None = "c4e8a2f61d57"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.add_column(
        "tenants",
        sa.Column("default_rollup", sa.Text(), server_default="latest", nullable=False),
    )
    op.add_column(
        "tenants",
        sa.Column("fiscal_year_start_month", sa.SmallInteger(), server_default="1", nullable=False),
    )
    op.add_column(
        "tenants",
        sa.Column("account_nps_safe_above", sa.SmallInteger(), server_default="30", nullable=False),
    )
    op.add_column(
        "tenants",
        sa.Column(
            "account_nps_at_risk_below", sa.SmallInteger(), server_default="0", nullable=False
        ),
    )
    op.create_check_constraint(
        op.f("ck_tenants_default_rollup"),
        "tenants",
        "default_rollup IN ('latest', 'average', 'lowest', 'account_nps', 'decision_maker')",
    )
    op.create_check_constraint(
        op.f("ck_tenants_fiscal_year_start_month"),
        "tenants",
        "fiscal_year_start_month BETWEEN 1 AND 12",
    )
    op.create_check_constraint(
        op.f("ck_tenants_account_nps_thresholds"),
        "tenants",
        "account_nps_at_risk_below BETWEEN -100 AND 100 "
        "AND account_nps_safe_above BETWEEN -100 AND 100 "
        "AND account_nps_at_risk_below <= account_nps_safe_above",
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_constraint(op.f("ck_tenants_account_nps_thresholds"), "tenants", type_="check")
    op.drop_constraint(op.f("ck_tenants_fiscal_year_start_month"), "tenants", type_="check")
    op.drop_constraint(op.f("ck_tenants_default_rollup"), "tenants", type_="check")
    op.drop_column("tenants", "account_nps_at_risk_below")
    op.drop_column("tenants", "account_nps_safe_above")
    op.drop_column("tenants", "fiscal_year_start_month")
    op.drop_column("tenants", "default_rollup")
