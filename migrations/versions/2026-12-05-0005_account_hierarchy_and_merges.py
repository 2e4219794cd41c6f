"""Add account parents, account merges and the pre-merge account of moved responses.

`accounts.parent_id` names the account's parent. A merged-away account keeps its row, so
its external id still resolves: `merged_into_id` is the account named in the merge,
`merged_at` when the merge takes effect, and `survivor_id` the account at the end of the
merge chain. `responses.merged_from_account_id` keeps the account a merge moved a response
away from, so that periods before the merge still count it there.

Revision ID: 9d3f1b6a2c48
Revises: 7d2f9b41c6e8
Create Date: 2026-12-05 00:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9d3f1b6a2c48"
down_revision: str | None = "7d2f9b41c6e8"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACCOUNT_LINKS = ("parent_id", "merged_into_id", "survivor_id")


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    for name in ACCOUNT_LINKS:
        op.add_column("accounts", sa.Column(name, sa.BigInteger(), nullable=True))
        op.create_foreign_key(
            op.f(f"fk_accounts_tenant_id_{name}_accounts"),
            "accounts",
            "accounts",
            ["tenant_id", name],
            ["tenant_id", "id"],
        )
        op.create_index(
            op.f(f"ix_accounts_tenant_id_{name}"),
            "accounts",
            ["tenant_id", name],
            postgresql_where=sa.text(f"{name} IS NOT NULL"),
        )
    op.add_column("accounts", sa.Column("merged_at", sa.DateTime(timezone=True), nullable=True))
    op.create_check_constraint(
        op.f("ck_accounts_merge_complete"),
        "accounts",
        "(merged_into_id IS NULL) = (merged_at IS NULL) "
        "AND (merged_into_id IS NULL) = (survivor_id IS NULL)",
    )
    op.create_check_constraint(
        op.f("ck_accounts_not_own_parent"), "accounts", "parent_id IS DISTINCT FROM id"
    )
    op.add_column("responses", sa.Column("merged_from_account_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(
        op.f("fk_responses_tenant_id_merged_from_account_id_accounts"),
        "responses",
        "accounts",
        ["tenant_id", "merged_from_account_id"],
        ["tenant_id", "id"],
    )
    op.add_column(
        "audit_events",
        sa.Column(
            "details",
            sa.dialects.postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_column("audit_events", "details")
    op.drop_constraint(
        op.f("fk_responses_tenant_id_merged_from_account_id_accounts"),
        "responses",
        type_="foreignkey",
    )
    op.drop_column("responses", "merged_from_account_id")
    op.drop_constraint(op.f("ck_accounts_not_own_parent"), "accounts", type_="check")
    op.drop_constraint(op.f("ck_accounts_merge_complete"), "accounts", type_="check")
    op.drop_column("accounts", "merged_at")
    for name in reversed(ACCOUNT_LINKS):
        op.drop_index(op.f(f"ix_accounts_tenant_id_{name}"), table_name="accounts")
        op.drop_constraint(
            op.f(f"fk_accounts_tenant_id_{name}_accounts"), "accounts", type_="foreignkey"
        )
        op.drop_column("accounts", name)
