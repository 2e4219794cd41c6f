"""Record administrative actions in the audit log: who acted and on what.

`actor_key_id` is the API key of the request (null for rows written before and for
command-line actions), and `object_id` the API key, share token or webhook endpoint acted
on. The `details` column that holds the non-secret facts of a change comes from the
account-merge revision before this one.

Revision ID: 7d3f9b2c41e6
Revises: 3f1d9a6c2b84
Create Date: 2026-12-05 00:15:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7d3f9b2c41e6"
down_revision: str | None = "3f1d9a6c2b84"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.add_column("audit_events", sa.Column("actor_key_id", sa.Uuid(), nullable=True))
    op.add_column("audit_events", sa.Column("object_id", sa.Text(), nullable=True))


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_column("audit_events", "object_id")
    op.drop_column("audit_events", "actor_key_id")
