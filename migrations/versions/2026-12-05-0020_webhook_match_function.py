"""Add the function that matches one incoming response to its account, for webhook ingest.

Webhook ingest writes a delivery in one statement. Inside it, this function takes the
tenant's resolution lock shared and then reads accounts, contacts and domains. Because
the function is VOLATILE, PostgreSQL gives each query in it a fresh snapshot in READ
COMMITTED (PostgreSQL 15 docs, "Function Volatility Categories"). So the match sees every
account change that committed while the lock was waited for, as the separate lock
statement of the ORM path does. The match rules are those of
`app.responses.repository._resolution`, and a test compares the two.

Its queries are lookups on unique keys, so it always uses generic plans. With the default
`plan_cache_mode` PostgreSQL may plan them again on every call.

Revision ID: 5b0e6c1d9a27
Revises: 7d3f9b2c41e6
Create Date: 2026-12-05 00:20:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "5b0e6c1d9a27"
down_revision: str | None = "7d3f9b2c41e6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# 1919119222 is `RESOLUTION_LOCK_CLASS` (0x72636F76) in `app.responses.repository`.
CREATE_FUNCTION = """
CREATE FUNCTION revcov_lock_and_match_response(
    p_tenant_id uuid, p_account_ref text, p_email_key text, p_email_domain text,
    OUT account_id bigint, OUT matched_by text, OUT merged_from_account_id bigint
)
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_generic_plan
AS $function$
DECLARE
    named_id bigint;
    named_survivor_id bigint;
    contact_account_id bigint;
    contact_accounts bigint;
    domain_account_id bigint;
    domain_accounts bigint;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(1919119222, hashtext(p_tenant_id::text));

    SELECT a.id, a.survivor_id INTO named_id, named_survivor_id
    FROM accounts AS a
    WHERE a.tenant_id = p_tenant_id AND a.external_id = p_account_ref;
    IF named_id IS NOT NULL THEN
        account_id := coalesce(named_survivor_id, named_id);
        matched_by := 'account_external_id';
        merged_from_account_id := nullif(named_id, account_id);
        RETURN;
    END IF;

    SELECT min(c.account_id), count(*) INTO contact_account_id, contact_accounts
    FROM contacts AS c
    WHERE c.tenant_id = p_tenant_id AND c.email = p_email_key;
    IF contact_accounts = 1 THEN
        account_id := contact_account_id;
        matched_by := 'contact';
        RETURN;
    END IF;
    IF contact_accounts > 1 THEN
        RETURN;
    END IF;

    SELECT min(d.account_id), count(*) INTO domain_account_id, domain_accounts
    FROM account_domains AS d
    WHERE d.tenant_id = p_tenant_id AND d.domain = p_email_domain;
    IF domain_accounts = 1 THEN
        account_id := domain_account_id;
        matched_by := 'email_domain';
    END IF;
END
$function$
"""


def upgrade() -> None:
    op.execute(CREATE_FUNCTION)


def downgrade() -> None:
    op.execute("DROP FUNCTION revcov_lock_and_match_response(uuid, text, text, text)")
