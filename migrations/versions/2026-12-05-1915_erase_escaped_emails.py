"""Read JSON webhook bodies with their escapes resolved, for erasure.

Erasure searches the raw bodies of webhook deliveries for the person's email. A JSON body
may write any character of the address as a `\\uXXXX` escape, which a search of the raw
text does not find. `revcov_json_text` returns a JSON body as PostgreSQL's jsonb prints
it, where such escapes are resolved, or NULL for a body that is not JSON in UTF-8.

Revision ID: 8e3b5a7c2d90
Revises: 7d2a9c4e1f58
Create Date: 2026-12-05 19:15:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "8e3b5a7c2d90"
down_revision: str | None = "7d2a9c4e1f58"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_TEXT = r"""
CREATE FUNCTION revcov_json_text(body bytea) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    RETURN convert_from(body, 'UTF8')::jsonb::text;
EXCEPTION
    WHEN data_exception OR invalid_text_representation OR character_not_in_repertoire
        OR untranslatable_character THEN
        RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute(JSON_TEXT)


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute("DROP FUNCTION revcov_json_text(bytea)")
