"""Record administrative actions in the audit log: who acted, on what, and what changed.

`actor_key_id` is the API key of the request (null for rows written before and for
command-line actions), `object_id` the API key or webhook endpoint acted on, and `details`
the non-secret facts of the change, such as the names of the changed fields.

Revision ID: 7d3f9b2c41e6
Revises: 4c8e2a17f3d9
Create Date: 2026-12-05 00:10:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "7d3f9b2c41e6"
down_revision: str | None = "4c8e2a17f3d9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.add_column("audit_events", sa.Column("actor_key_id", sa.Uuid(), nullable=True))
    op.add_column("audit_events", sa.Column("object_id", sa.Text(), nullable=True))
    op.add_column(
        "audit_events",
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_column("audit_events", "details")
    op.drop_column("audit_events", "object_id")
    op.drop_column("audit_events", "actor_key_id")
