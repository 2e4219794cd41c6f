"""Add contacts, account domains, match rules, erasure marks and the audit log.

Revision ID: c4e8a2f61d57
Revises: 7a3c1e9b2d40
Create Date: 2026-12-04 22:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "c4e8a2f61d57"
down_revision: str | None = "7a3c1e9b2d40"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_table(
        "account_domains",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("domain", sa.Text(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "account_id"],
            ["accounts.tenant_id", "accounts.id"],
            name=op.f("fk_account_domains_tenant_id_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id", "domain", "account_id", name=op.f("pk_account_domains")
        ),
    )
    op.create_index(
        "ix_account_domains_tenant_id_account_id",
        "account_domains",
        ["tenant_id", "account_id"],
        unique=False,
    )

    op.create_table(
        "contacts",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("role", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "role IN ('decision_maker', 'influencer', 'user')", name=op.f("ck_contacts_role")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "account_id"],
            ["accounts.tenant_id", "accounts.id"],
            name=op.f("fk_contacts_tenant_id_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "email", "account_id", name=op.f("pk_contacts")),
    )
    op.create_index(
        "ix_contacts_tenant_id_account_id",
        "contacts",
        ["tenant_id", "account_id"],
        unique=False,
    )

    op.create_table(
        "audit_events",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("subject_hash", sa.LargeBinary(length=32), nullable=True),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("response_id", sa.Text(), nullable=True),
        sa.Column(
            "counts",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="{}",
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_audit_events_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_audit_events")),
    )

    op.add_column("responses", sa.Column("matched_by", sa.Text(), nullable=True))
    op.add_column("responses", sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "responses",
        sa.Column(
            "email_key",
            sa.Text(),
            sa.Computed("nullif(lower(btrim(email)), '')", persisted=True),
            nullable=True,
        ),
    )
    op.add_column(
        "responses",
        sa.Column(
            "email_domain",
            sa.Text(),
            sa.Computed("lower(substring(btrim(email) from '@([^@]+)$'))", persisted=True),
            nullable=True,
        ),
    )
    # Before this revision an account was only ever found by the account id in the payload.
    op.execute(
        "UPDATE responses SET matched_by = 'account_external_id' WHERE account_id IS NOT NULL"
    )
    op.create_check_constraint(
        op.f("ck_responses_matched_by_rule"),
        "responses",
        "matched_by IN ('account_external_id', 'contact', 'email_domain', 'manual')",
    )
    op.create_check_constraint(
        op.f("ck_responses_matched_by_with_account"),
        "responses",
        "(account_id IS NULL) = (matched_by IS NULL)",
    )
    op.drop_index(
        "ix_responses_unmatched_account_ref",
        table_name="responses",
        postgresql_where=sa.text("account_id IS NULL AND account_ref IS NOT NULL"),
    )
    op.create_index(
        "ix_responses_tenant_id_account_ref",
        "responses",
        ["tenant_id", "account_ref"],
        unique=False,
    )
    op.create_index(
        "ix_responses_tenant_id_email_key", "responses", ["tenant_id", "email_key"], unique=False
    )
    op.create_index(
        "ix_responses_tenant_id_email_domain",
        "responses",
        ["tenant_id", "email_domain"],
        unique=False,
    )
    op.create_index(
        "ix_responses_unmatched",
        "responses",
        ["tenant_id", "id"],
        unique=False,
        postgresql_where=sa.text("account_id IS NULL"),
    )

    op.add_column(
        "webhook_deliveries",
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_column("webhook_deliveries", "erased_at")

    op.drop_index(
        "ix_responses_unmatched",
        table_name="responses",
        postgresql_where=sa.text("account_id IS NULL"),
    )
    op.drop_index("ix_responses_tenant_id_email_domain", table_name="responses")
    op.drop_index("ix_responses_tenant_id_email_key", table_name="responses")
    op.drop_index("ix_responses_tenant_id_account_ref", table_name="responses")
    op.create_index(
        "ix_responses_unmatched_account_ref",
        "responses",
        ["tenant_id", "account_ref"],
        unique=False,
        postgresql_where=sa.text("account_id IS NULL AND account_ref IS NOT NULL"),
    )
    op.drop_constraint(op.f("ck_responses_matched_by_with_account"), "responses", type_="check")
    op.drop_constraint(op.f("ck_responses_matched_by_rule"), "responses", type_="check")
    # The older schema finds accounts by the payload's account id alone, so responses
    # matched by contact, email domain or by hand become unmatched again.
    op.execute(
        "UPDATE responses SET account_id = NULL "
        "WHERE matched_by IS DISTINCT FROM 'account_external_id'"
    )
    op.drop_column("responses", "email_domain")
    op.drop_column("responses", "email_key")
    op.drop_column("responses", "erased_at")
    op.drop_column("responses", "matched_by")

    op.drop_table("audit_events")
    op.drop_index("ix_contacts_tenant_id_account_id", table_name="contacts")
    op.drop_table("contacts")
    op.drop_index("ix_account_domains_tenant_id_account_id", table_name="account_domains")
    op.drop_table("account_domains")
