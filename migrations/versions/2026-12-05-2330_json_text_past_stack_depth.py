"""Let erasure read past webhook bodies that nest too deeply for jsonb.

`revcov_json_text` cast every stored body to jsonb. A body nested about 20,000 levels
deep, which an unsigned webhook can deliver, exceeded PostgreSQL's stack depth while
being cast (SQLSTATE 54001), and the error failed every later erasure of its tenant.
The function now returns NULL for any program limit it reaches (SQLSTATE class 54), as
for a body that is not JSON. The erasure then searches only the body's raw text.

Revision ID: 9f4c6b8d3e12
Revises: 8e3b5a7c2d90
Create Date: 2026-12-05 23:30:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "9f4c6b8d3e12"
down_revision: str | None = "8e3b5a7c2d90"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json_text(conditions: str) -> str:
    return rf"""
CREATE OR REPLACE FUNCTION revcov_json_text(body bytea) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    RETURN convert_from(body, 'UTF8')::jsonb::text;
EXCEPTION
    WHEN {conditions} THEN
        RETURN NULL;
END
$$
"""


PREVIOUS_CONDITIONS = (
    "data_exception OR invalid_text_representation OR character_not_in_repertoire\n"
    "        OR untranslatable_character"
)


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute(_json_text(PREVIOUS_CONDITIONS + " OR program_limit_exceeded"))


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute(_json_text(PREVIOUS_CONDITIONS))
