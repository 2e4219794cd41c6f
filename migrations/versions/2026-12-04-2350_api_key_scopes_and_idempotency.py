"""Add API key scopes and the saved responses of Idempotency-Key requests.

Existing keys get all three scopes, so they keep every permission they had.

Revision ID: 4c8e2a17f3d9
Revises: e5a9c3f70b12
Create Date: 2026-12-04 23:45:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "4c8e2a17f3d9"
down_revision: str | None = "e5a9c3f70b12"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.add_column(
        "api_keys",
        sa.Column(
            "scopes",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{ingest,read,admin}'::text[]"),
            nullable=False,
        ),
    )
    op.create_check_constraint(
        op.f("ck_api_keys_scopes"),
        "api_keys",
        "cardinality(scopes) > 0 AND scopes <@ ARRAY['ingest', 'read', 'admin']::text[]",
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("request_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("status_code", sa.SmallInteger(), nullable=False),
        sa.Column("response_body", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_idempotency_keys_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index(
        op.f("ix_idempotency_keys_tenant_id_created_at"),
        "idempotency_keys",
        ["tenant_id", "created_at"],
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_index(op.f("ix_idempotency_keys_tenant_id_created_at"), table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    op.drop_constraint(op.f("ck_api_keys_scopes"), "api_keys", type_="check")
    op.drop_column("api_keys", "scopes")
