"""Keep the counts that segment reports need in the quarter state.

Segment reports count a respondent once per segment, with its newest score among the
segment's accounts. Summing `account_quarter_scores` over a segment gives that count
except for respondents who answered for several accounts in the quarter, so
`respondent_quarter_scores.accounts` now counts a respondent's accounts (before any
merge), and reports correct the sums from the responses of those respondents alone.
`account_quarter_scores.scored_responses` counts each account's scored responses, so a
segment's response count needs no response scan either.

`revcov_write_scores` fills both columns. The rebuild at the end fills them for the
existing rows.

The revision also keeps one-response refreshes cheap in a database with few tenants.
Their generic plans estimated the whole-tenant branches of `revcov_write_scores` at
every row of a tenant, and such a cost made PostgreSQL 15 compile each statement with
JIT: 172 ms per response INSERT with two tenants and 300,000 responses, against 1.2 ms
with the whole-tenant statements skipped when no tenant is rebuilt and JIT off.

Revision ID: 6c1f2d8e4b71
Revises: 5b8e1c7d9a30
Create Date: 2026-12-05 06:00:00+00:00
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from alembic import op

revision: str = "6c1f2d8e4b71"
down_revision: str | None = "5b8e1c7d9a30"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REFRESH_SCORES = "revcov_refresh_scores(uuid[], bigint[], text[], bigint[], timestamptz[], boolean)"

# The previous revision's function, which now also writes `scored_responses` (counted in
# `latest`) and `accounts` (the distinct origin accounts of a respondent's responses).
WRITE_SCORES = r"""
CREATE OR REPLACE FUNCTION revcov_write_scores(
    account_tenants uuid[],
    account_quarters timestamptz[],
    account_ids bigint[],
    respondent_tenants uuid[],
    respondent_quarters timestamptz[],
    respondent_emails text[],
    respondent_response_ids bigint[],
    whole_tenants uuid[]
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM account_quarter_scores AS state
    USING unnest(account_tenants, account_quarters, account_ids)
        AS k (tenant_id, quarter_start, account_id)
    WHERE state.tenant_id = k.tenant_id
        AND state.quarter_start = k.quarter_start
        AND state.account_id = k.account_id;
    -- Refreshes run with generic plans, which do not know that `whole_tenants` is empty.
    -- With few tenants in the database such a plan scans whole tables, so the
    -- whole-tenant statements and branches run only for a rebuild.
    IF cardinality(whole_tenants) > 0 THEN
        DELETE FROM account_quarter_scores WHERE tenant_id = ANY (whole_tenants);
        DELETE FROM respondent_quarter_scores WHERE tenant_id = ANY (whole_tenants);
    END IF;

    INSERT INTO account_quarter_scores (
        tenant_id, quarter_start, account_id, latest_score, senior_score,
        respondents, score_sum, min_score, promoters, detractors, scored_responses
    )
    WITH keys AS (
        SELECT DISTINCT k.tenant_id, k.quarter_start, k.account_id,
            revcov_quarter_end(k.quarter_start, t.timezone, t.fiscal_year_start_month)
                AS quarter_end
        FROM unnest(account_tenants, account_quarters, account_ids)
            AS k (tenant_id, quarter_start, account_id)
        JOIN tenants AS t ON t.id = k.tenant_id
    ),
    picked AS (
        SELECT k.tenant_id, k.quarter_start, k.account_id, r.id, r.score, r.submitted_at,
            r.response_id, r.source, r.email_key, r.account_id AS current_account_id
        FROM keys AS k
        JOIN responses AS r
            ON r.tenant_id = k.tenant_id
            AND coalesce(r.merged_from_account_id, r.account_id) = k.account_id
            AND r.submitted_at >= k.quarter_start
            AND r.submitted_at < k.quarter_end
            AND r.score IS NOT NULL
        UNION ALL
        SELECT r.tenant_id,
            revcov_quarter_start(r.submitted_at, t.timezone, t.fiscal_year_start_month),
            coalesce(r.merged_from_account_id, r.account_id), r.id, r.score, r.submitted_at,
            r.response_id, r.source, r.email_key, r.account_id
        FROM responses AS r
        JOIN tenants AS t ON t.id = r.tenant_id
        WHERE cardinality(whole_tenants) > 0
            AND r.tenant_id = ANY (whole_tenants)
            AND r.score IS NOT NULL
            AND coalesce(r.merged_from_account_id, r.account_id) IS NOT NULL
    ),
    scored AS (
        SELECT p.*,
            CASE c.role
                WHEN 'decision_maker' THEN 3 WHEN 'influencer' THEN 2 WHEN 'user' THEN 1 ELSE 0
            END AS role_rank
        FROM picked AS p
        LEFT JOIN contacts AS c
            ON c.tenant_id = p.tenant_id
            AND c.account_id = p.current_account_id
            AND c.email = p.email_key
    ),
    latest AS (
        -- The window counts every scored response of the account before DISTINCT ON
        -- keeps the newest.
        SELECT DISTINCT ON (tenant_id, quarter_start, account_id)
            tenant_id, quarter_start, account_id, score,
            count(*) OVER (PARTITION BY tenant_id, quarter_start, account_id)
                AS scored_responses
        FROM scored
        ORDER BY tenant_id, quarter_start, account_id,
            submitted_at DESC, response_id DESC, source DESC
    ),
    senior AS (
        SELECT DISTINCT ON (tenant_id, quarter_start, account_id)
            tenant_id, quarter_start, account_id, score
        FROM scored
        ORDER BY tenant_id, quarter_start, account_id,
            role_rank DESC, submitted_at DESC, response_id DESC, source DESC
    ),
    by_respondent AS (
        SELECT DISTINCT ON (
            tenant_id, quarter_start, account_id, email_key,
            CASE WHEN email_key IS NULL THEN id END
        ) tenant_id, quarter_start, account_id, score
        FROM scored
        ORDER BY tenant_id, quarter_start, account_id, email_key,
            CASE WHEN email_key IS NULL THEN id END,
            submitted_at DESC, response_id DESC, source DESC
    ),
    summed AS (
        SELECT tenant_id, quarter_start, account_id,
            count(*) AS respondents,
            sum(score) AS score_sum,
            min(score) AS min_score,
            count(*) FILTER (WHERE score >= 9) AS promoters,
            count(*) FILTER (WHERE score <= 6) AS detractors
        FROM by_respondent
        GROUP BY tenant_id, quarter_start, account_id
    )
    SELECT summed.tenant_id, summed.quarter_start, summed.account_id, latest.score, senior.score,
        summed.respondents, summed.score_sum, summed.min_score, summed.promoters, summed.detractors,
        latest.scored_responses
    FROM summed
    JOIN latest USING (tenant_id, quarter_start, account_id)
    JOIN senior USING (tenant_id, quarter_start, account_id);

    DELETE FROM respondent_quarter_scores AS state
    USING unnest(
            respondent_tenants, respondent_quarters, respondent_emails, respondent_response_ids
        ) AS k (tenant_id, quarter_start, email_key, response_id)
    WHERE state.tenant_id = k.tenant_id
        AND state.quarter_start = k.quarter_start
        AND state.respondent = CASE
            WHEN k.email_key IS NOT NULL THEN 'email:' || k.email_key
            ELSE 'response:' || k.response_id
        END;

    INSERT INTO respondent_quarter_scores (
        tenant_id, quarter_start, respondent, latest_score, scored_responses, unmatched_responses,
        accounts
    )
    WITH keys AS (
        SELECT DISTINCT k.tenant_id, k.quarter_start, k.email_key, k.response_id,
            revcov_quarter_end(k.quarter_start, t.timezone, t.fiscal_year_start_month)
                AS quarter_end
        FROM unnest(
            respondent_tenants, respondent_quarters, respondent_emails, respondent_response_ids
        ) AS k (tenant_id, quarter_start, email_key, response_id)
        JOIN tenants AS t ON t.id = k.tenant_id
    ),
    scored AS (
        SELECT k.tenant_id, k.quarter_start, 'email:' || k.email_key AS respondent, r.score,
            r.submitted_at, r.response_id, r.source,
            coalesce(r.merged_from_account_id, r.account_id) AS origin_account_id
        FROM keys AS k
        JOIN responses AS r
            ON r.tenant_id = k.tenant_id
            AND r.email_key = k.email_key
            AND r.submitted_at >= k.quarter_start
            AND r.submitted_at < k.quarter_end
            AND r.score IS NOT NULL
        WHERE k.email_key IS NOT NULL
        UNION ALL
        SELECT k.tenant_id, k.quarter_start, 'response:' || r.id, r.score,
            r.submitted_at, r.response_id, r.source,
            coalesce(r.merged_from_account_id, r.account_id)
        FROM keys AS k
        JOIN responses AS r
            ON r.tenant_id = k.tenant_id
            AND r.id = k.response_id
            AND r.email_key IS NULL
            AND r.submitted_at >= k.quarter_start
            AND r.submitted_at < k.quarter_end
            AND r.score IS NOT NULL
        WHERE k.email_key IS NULL
        UNION ALL
        SELECT r.tenant_id,
            revcov_quarter_start(r.submitted_at, t.timezone, t.fiscal_year_start_month),
            CASE WHEN r.email_key IS NULL THEN 'response:' || r.id ELSE 'email:' || r.email_key END,
            r.score, r.submitted_at, r.response_id, r.source,
            coalesce(r.merged_from_account_id, r.account_id)
        FROM responses AS r
        JOIN tenants AS t ON t.id = r.tenant_id
        WHERE cardinality(whole_tenants) > 0
            AND r.tenant_id = ANY (whole_tenants)
            AND r.score IS NOT NULL
    ),
    latest AS (
        SELECT DISTINCT ON (tenant_id, quarter_start, respondent)
            tenant_id, quarter_start, respondent, score
        FROM scored
        ORDER BY tenant_id, quarter_start, respondent,
            submitted_at DESC, response_id DESC, source DESC
    ),
    counted AS (
        SELECT tenant_id, quarter_start, respondent,
            count(*) AS scored_responses,
            count(*) FILTER (WHERE origin_account_id IS NULL) AS unmatched_responses,
            count(DISTINCT origin_account_id) AS accounts
        FROM scored
        GROUP BY tenant_id, quarter_start, respondent
    )
    SELECT latest.tenant_id, latest.quarter_start, latest.respondent, latest.score,
        counted.scored_responses, counted.unmatched_responses, counted.accounts
    FROM latest
    JOIN counted USING (tenant_id, quarter_start, respondent);
END;
$$;

"""


def _previous_revision() -> ModuleType:
    path = Path(__file__).with_name("2026-12-05-0025_quarter_scores.py")
    spec = importlib.util.spec_from_file_location("quarter_scores_revision", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _previous_write_scores() -> str:
    """Return the previous revision's `revcov_write_scores` as a CREATE OR REPLACE statement."""
    previous = _previous_revision()
    for statement in previous._STATEMENT_END.split(previous.FUNCTIONS):
        if "CREATE FUNCTION revcov_write_scores(" in statement:
            return statement.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")
    raise RuntimeError("revcov_write_scores not found in the quarter_scores revision")


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute(
        "ALTER TABLE account_quarter_scores ADD COLUMN scored_responses integer NOT NULL DEFAULT 0"
    )
    op.execute(
        "ALTER TABLE respondent_quarter_scores ADD COLUMN accounts integer NOT NULL DEFAULT 0"
    )
    op.execute("ALTER TABLE account_quarter_scores ALTER COLUMN scored_responses DROP DEFAULT")
    op.execute("ALTER TABLE respondent_quarter_scores ALTER COLUMN accounts DROP DEFAULT")
    op.execute(WRITE_SCORES)
    op.execute(f"ALTER FUNCTION {REFRESH_SCORES} SET jit = off")
    # Segment reports read the respondents of several accounts, usually few, through it.
    op.execute(
        "CREATE INDEX ix_respondent_quarter_scores_several_accounts "
        "ON respondent_quarter_scores (tenant_id, quarter_start) WHERE accounts > 1"
    )
    # The rebuild reads every scored response once (see the previous revision).
    op.execute("SET LOCAL statement_timeout = 0")
    op.execute("SELECT revcov_rebuild_scores(ARRAY(SELECT id FROM tenants))")


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute(_previous_write_scores())
    op.execute(f"ALTER FUNCTION {REFRESH_SCORES} RESET jit")
    op.execute("DROP INDEX ix_respondent_quarter_scores_several_accounts")
    op.execute("ALTER TABLE respondent_quarter_scores DROP COLUMN accounts")
    op.execute("ALTER TABLE account_quarter_scores DROP COLUMN scored_responses")
