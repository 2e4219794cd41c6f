"""Keep per-quarter response state that reports read instead of re-deriving it.

`account_quarter_scores` holds, for each account and quarter with a scored response,
what every roll-up rule needs: the newest score, the newest score of the most senior
contact role, and over each respondent's newest response the count, sum, minimum,
promoters and detractors. `respondent_quarter_scores` holds each respondent's newest
score in the quarter over all responses, matched or not, with the counts of scored and
unmatched responses. A response counts for its account before any merge moved it
(`merged_from_account_id`, else `account_id`), as the report statements count it.

Quarters are three-month blocks in the tenant's time zone that start on its fiscal-year
start month (calendar quarters when it starts in January, April, July or October).

Triggers keep both tables exact at every commit. A statement that writes responses or
contacts recomputes each (account, quarter) and (respondent, quarter) it touched from
the responses themselves, so the order in which writes arrive does not matter. The
recomputation runs after it takes a lock on each key, and each statement of the trigger
function takes a new snapshot under READ COMMITTED, so two transactions that write one
key in turn both see the other's committed rows. A statement touching more than 10,000
responses, and a change of the tenant's time zone or fiscal-year start, rebuild the
tenant's rows under a tenant-wide lock instead.

Revision ID: 5b8e1c7d9a30
Revises: 5b0e6c1d9a27
Create Date: 2026-12-05 00:25:00+00:00
"""

import re
from collections.abc import Sequence

from alembic import op

# asyncpg prepares each statement, so the scripts below run one top-level statement at a
# time. A statement ends at a semicolon closing a line that an unindented line follows.
_STATEMENT_END = re.compile(r";\n(?=\n*(?:CREATE|-- )|\s*$)")


def _execute_script(script: str) -> None:
    for statement in _STATEMENT_END.split(script):
        if statement.strip():
            op.execute(statement)


revision: str = "5b8e1c7d9a30"
down_revision: str | None = "5b0e6c1d9a27"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = """
CREATE TABLE account_quarter_scores (
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    quarter_start timestamptz NOT NULL,
    account_id bigint NOT NULL,
    latest_score smallint NOT NULL,
    senior_score smallint NOT NULL,
    respondents integer NOT NULL,
    score_sum integer NOT NULL,
    min_score smallint NOT NULL,
    promoters integer NOT NULL,
    detractors integer NOT NULL,
    CONSTRAINT pk_account_quarter_scores PRIMARY KEY (tenant_id, quarter_start, account_id)
);

CREATE TABLE respondent_quarter_scores (
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    quarter_start timestamptz NOT NULL,
    -- 'email:' and the response's email key, or 'response:' and the id of a response
    -- without an email, which is a respondent of its own.
    respondent text NOT NULL,
    latest_score smallint NOT NULL,
    scored_responses integer NOT NULL,
    unmatched_responses integer NOT NULL,
    CONSTRAINT pk_respondent_quarter_scores PRIMARY KEY (tenant_id, quarter_start, respondent)
);

-- Finds the responses of an account before any merge, the key of the account state.
CREATE INDEX ix_responses_tenant_id_origin_submitted_at
    ON responses (tenant_id, (coalesce(merged_from_account_id, account_id)), submitted_at)
    WHERE score IS NOT NULL;
"""

FUNCTIONS = r"""
-- One expression, so that PostgreSQL inlines it into the statements that call it.
CREATE FUNCTION revcov_quarter_start(instant timestamptz, zone text, fiscal_start_month integer)
RETURNS timestamptz LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT (
        date_trunc('month', instant AT TIME ZONE zone)
        - make_interval(
            months => ((extract(month FROM instant AT TIME ZONE zone)::integer
                - fiscal_start_month) % 3 + 3) % 3
        )
    ) AT TIME ZONE zone
$$;

-- A quarter lasts 89 to 92 days, so 100 days after its start lies in the next quarter.
CREATE FUNCTION revcov_quarter_end(quarter_start timestamptz, zone text, fiscal_start_month integer)
RETURNS timestamptz LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT revcov_quarter_start(quarter_start + interval '100 days', zone, fiscal_start_month)
$$;

-- Recompute the state of the given keys, and of every response of `whole_tenants`, from
-- the responses. The key arrays are parallel: element i of each names one key. Account
-- keys have an account id and respondent keys an email key or a response id. The caller
-- holds the locks.
CREATE FUNCTION revcov_write_scores(
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
    DELETE FROM account_quarter_scores WHERE tenant_id = ANY (whole_tenants);
    DELETE FROM respondent_quarter_scores WHERE tenant_id = ANY (whole_tenants);

    INSERT INTO account_quarter_scores (
        tenant_id, quarter_start, account_id, latest_score, senior_score,
        respondents, score_sum, min_score, promoters, detractors
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
        WHERE r.tenant_id = ANY (whole_tenants)
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
        SELECT DISTINCT ON (tenant_id, quarter_start, account_id)
            tenant_id, quarter_start, account_id, score
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
        summed.respondents, summed.score_sum, summed.min_score, summed.promoters, summed.detractors
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
        tenant_id, quarter_start, respondent, latest_score, scored_responses, unmatched_responses
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
            coalesce(r.merged_from_account_id, r.account_id) IS NULL AS unmatched
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
            coalesce(r.merged_from_account_id, r.account_id) IS NULL
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
            coalesce(r.merged_from_account_id, r.account_id) IS NULL
        FROM responses AS r
        JOIN tenants AS t ON t.id = r.tenant_id
        WHERE r.tenant_id = ANY (whole_tenants) AND r.score IS NOT NULL
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
            count(*) FILTER (WHERE unmatched) AS unmatched_responses
        FROM scored
        GROUP BY tenant_id, quarter_start, respondent
    )
    SELECT latest.tenant_id, latest.quarter_start, latest.respondent, latest.score,
        counted.scored_responses, counted.unmatched_responses
    FROM latest
    JOIN counted USING (tenant_id, quarter_start, respondent);
END;
$$;

-- Rebuild the state of every response of the tenants under the tenant-wide lock.
CREATE FUNCTION revcov_rebuild_scores(tenant_ids uuid[]) RETURNS void LANGUAGE plpgsql
-- Plans for the whole-tenant branch depend on the tenant's size, so they are made for
-- each call, also when a trigger calls this function.
SET plan_cache_mode = force_custom_plan
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(1919119732, hashtext(id::text))
    FROM (SELECT DISTINCT id FROM unnest(tenant_ids) AS id ORDER BY id) AS ordered;
    PERFORM revcov_write_scores('{}', '{}', '{}', '{}', '{}', '{}', '{}', tenant_ids);
END;
$$;

-- Lock and recompute the keys of changed scored responses, given as parallel arrays. The
-- advisory lock classes are 1919119731 ('rcqs', one key) and 1919119732 ('rcqt', a
-- tenant). A change of one response shares the tenant lock and locks its keys. Any other
-- change (`exclusive`) takes the tenant lock alone, because the keys of several changes
-- in one transaction could be locked in an order that deadlocks with another's. The
-- service takes that lock before its first write when a transaction may change several
-- responses or contacts, so a transaction never waits for it while holding key locks.
CREATE FUNCTION revcov_refresh_scores(
    tenant_ids uuid[],
    origin_account_ids bigint[],
    email_keys text[],
    response_ids bigint[],
    submitted_ats timestamptz[],
    exclusive boolean
) RETURNS void LANGUAGE plpgsql
-- Planning its statements took about three quarters of a one-response refresh (1.9 of
-- 2.4 ms on a 2-core machine). The generic plans read each key through an index, which
-- suits the few keys of a statement that reaches this point.
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    account_tenants uuid[];
    account_quarters timestamptz[];
    account_ids bigint[];
    respondent_tenants uuid[];
    respondent_quarters timestamptz[];
    respondent_emails text[];
    respondent_response_ids bigint[];
BEGIN
    IF cardinality(tenant_ids) > 10000 THEN
        PERFORM revcov_rebuild_scores(ARRAY(SELECT DISTINCT unnest(tenant_ids)));
        RETURN;
    END IF;

    -- The tenant lock comes before the keys are computed, so they are on the quarter grid
    -- of the latest committed time zone, never on the grid that a rebuild is replacing.
    IF exclusive THEN
        PERFORM pg_advisory_xact_lock(1919119732, hashtext(id::text))
        FROM (SELECT DISTINCT id FROM unnest(tenant_ids) AS id ORDER BY id) AS ordered;
    ELSE
        PERFORM pg_advisory_xact_lock_shared(1919119732, hashtext(id::text))
        FROM (SELECT DISTINCT id FROM unnest(tenant_ids) AS id ORDER BY id) AS ordered;
    END IF;

    SELECT array_agg(tenant_id), array_agg(quarter_start), array_agg(account_id)
    INTO account_tenants, account_quarters, account_ids
    FROM (
        SELECT DISTINCT c.tenant_id,
            revcov_quarter_start(c.submitted_at, t.timezone, t.fiscal_year_start_month)
                AS quarter_start,
            c.account_id
        FROM unnest(tenant_ids, origin_account_ids, submitted_ats)
            AS c (tenant_id, account_id, submitted_at)
        JOIN tenants AS t ON t.id = c.tenant_id
        WHERE c.account_id IS NOT NULL
    ) AS k;

    SELECT array_agg(tenant_id), array_agg(quarter_start), array_agg(email_key),
        array_agg(response_id)
    INTO respondent_tenants, respondent_quarters, respondent_emails, respondent_response_ids
    FROM (
        SELECT DISTINCT c.tenant_id,
            revcov_quarter_start(c.submitted_at, t.timezone, t.fiscal_year_start_month)
                AS quarter_start,
            c.email_key,
            CASE WHEN c.email_key IS NULL THEN c.response_id END AS response_id
        FROM unnest(tenant_ids, email_keys, response_ids, submitted_ats)
            AS c (tenant_id, email_key, response_id, submitted_at)
        JOIN tenants AS t ON t.id = c.tenant_id
    ) AS k;

    IF NOT exclusive THEN
        PERFORM pg_advisory_xact_lock(1919119731, key)
        FROM (
            SELECT hashtext(concat_ws('/', tenant_id, quarter_start, 'account', account_id))
                AS key
            FROM unnest(account_tenants, account_quarters, account_ids)
                AS k (tenant_id, quarter_start, account_id)
            UNION
            SELECT hashtext(concat_ws('/', tenant_id, quarter_start, email_key, response_id))
            FROM unnest(respondent_tenants, respondent_quarters, respondent_emails,
                    respondent_response_ids)
                AS k (tenant_id, quarter_start, email_key, response_id)
            ORDER BY key
        ) AS ordered;
    END IF;

    PERFORM revcov_write_scores(
        coalesce(account_tenants, '{}'), coalesce(account_quarters, '{}'),
        coalesce(account_ids, '{}'),
        coalesce(respondent_tenants, '{}'), coalesce(respondent_quarters, '{}'),
        coalesce(respondent_emails, '{}'), coalesce(respondent_response_ids, '{}'), '{}'
    );
END;
$$;

-- Statement triggers with transition tables, so that one multi-row statement refreshes
-- its keys at once. Only scored rows, before or after the change, affect the state.
CREATE FUNCTION revcov_responses_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    tenant_ids uuid[];
    origin_account_ids bigint[];
    email_keys text[];
    response_ids bigint[];
    submitted_ats timestamptz[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF (SELECT count(*) FROM new_rows) > 10000 THEN
            PERFORM revcov_rebuild_scores(ARRAY(SELECT DISTINCT tenant_id FROM new_rows));
            RETURN NULL;
        END IF;
        SELECT array_agg(tenant_id), array_agg(coalesce(merged_from_account_id, account_id)),
            array_agg(email_key), array_agg(id), array_agg(submitted_at)
        INTO tenant_ids, origin_account_ids, email_keys, response_ids, submitted_ats
        FROM new_rows
        WHERE score IS NOT NULL;
    ELSIF TG_OP = 'UPDATE' THEN
        IF (SELECT count(*) FROM new_rows) > 10000 THEN
            PERFORM revcov_rebuild_scores(ARRAY(SELECT DISTINCT tenant_id FROM new_rows));
            RETURN NULL;
        END IF;
        -- Rows whose counted columns did not change (a comment edit, say) change nothing.
        -- A changed row gives its keys before and after the change.
        SELECT array_agg(k.tenant_id), array_agg(k.origin_account_id), array_agg(k.email_key),
            array_agg(k.id), array_agg(k.submitted_at)
        INTO tenant_ids, origin_account_ids, email_keys, response_ids, submitted_ats
        FROM old_rows AS o
        JOIN new_rows AS n ON n.tenant_id = o.tenant_id AND n.id = o.id
        CROSS JOIN LATERAL (
            VALUES
                (o.tenant_id, coalesce(o.merged_from_account_id, o.account_id), o.email_key,
                    o.id, o.submitted_at, o.score),
                (n.tenant_id, coalesce(n.merged_from_account_id, n.account_id), n.email_key,
                    n.id, n.submitted_at, n.score)
        ) AS k (tenant_id, origin_account_id, email_key, id, submitted_at, score)
        WHERE (o.score, o.submitted_at, o.response_id, o.source, o.email_key,
                o.account_id, o.merged_from_account_id)
            IS DISTINCT FROM (n.score, n.submitted_at, n.response_id, n.source,
                n.email_key, n.account_id, n.merged_from_account_id)
            AND k.score IS NOT NULL;
    ELSE
        IF (SELECT count(*) FROM old_rows) > 10000 THEN
            PERFORM revcov_rebuild_scores(ARRAY(SELECT DISTINCT tenant_id FROM old_rows));
            RETURN NULL;
        END IF;
        SELECT array_agg(tenant_id), array_agg(coalesce(merged_from_account_id, account_id)),
            array_agg(email_key), array_agg(id), array_agg(submitted_at)
        INTO tenant_ids, origin_account_ids, email_keys, response_ids, submitted_ats
        FROM old_rows
        WHERE score IS NOT NULL;
    END IF;

    IF tenant_ids IS NOT NULL THEN
        PERFORM revcov_refresh_scores(
            tenant_ids, origin_account_ids, email_keys, response_ids, submitted_ats,
            cardinality(ARRAY(SELECT DISTINCT unnest(response_ids))) > 1
        );
    END IF;
    RETURN NULL;
END;
$$;

-- A contact's role decides which response the `decision_maker` rule counts, so a change
-- of contacts refreshes the keys of the responses its email gave at its account.
CREATE FUNCTION revcov_contacts_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    tenant_ids uuid[];
    origin_account_ids bigint[];
    email_keys text[];
    response_ids bigint[];
    submitted_ats timestamptz[];
BEGIN
    -- Taken before the responses are read: a response written concurrently is then
    -- either committed and read here, or refreshed after this change commits, with the
    -- new role.
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_advisory_xact_lock(1919119732, hashtext(id::text))
        FROM (SELECT DISTINCT tenant_id AS id FROM old_rows ORDER BY 1) AS ordered;
    ELSE
        PERFORM pg_advisory_xact_lock(1919119732, hashtext(id::text))
        FROM (SELECT DISTINCT tenant_id AS id FROM new_rows ORDER BY 1) AS ordered;
    END IF;

    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(r.tenant_id), array_agg(coalesce(r.merged_from_account_id, r.account_id)),
            array_agg(r.email_key), array_agg(r.id), array_agg(r.submitted_at)
        INTO tenant_ids, origin_account_ids, email_keys, response_ids, submitted_ats
        FROM (SELECT DISTINCT tenant_id, account_id, email FROM new_rows) AS c
        JOIN responses AS r
            ON r.tenant_id = c.tenant_id AND r.account_id = c.account_id AND r.email_key = c.email
        WHERE r.score IS NOT NULL;
    ELSIF TG_OP = 'UPDATE' THEN
        SELECT array_agg(r.tenant_id), array_agg(coalesce(r.merged_from_account_id, r.account_id)),
            array_agg(r.email_key), array_agg(r.id), array_agg(r.submitted_at)
        INTO tenant_ids, origin_account_ids, email_keys, response_ids, submitted_ats
        FROM (
            SELECT tenant_id, account_id, email FROM new_rows
            UNION
            SELECT tenant_id, account_id, email FROM old_rows
        ) AS c
        JOIN responses AS r
            ON r.tenant_id = c.tenant_id AND r.account_id = c.account_id AND r.email_key = c.email
        WHERE r.score IS NOT NULL;
    ELSE
        SELECT array_agg(r.tenant_id), array_agg(coalesce(r.merged_from_account_id, r.account_id)),
            array_agg(r.email_key), array_agg(r.id), array_agg(r.submitted_at)
        INTO tenant_ids, origin_account_ids, email_keys, response_ids, submitted_ats
        FROM (SELECT DISTINCT tenant_id, account_id, email FROM old_rows) AS c
        JOIN responses AS r
            ON r.tenant_id = c.tenant_id AND r.account_id = c.account_id AND r.email_key = c.email
        WHERE r.score IS NOT NULL;
    END IF;

    IF tenant_ids IS NOT NULL THEN
        PERFORM revcov_refresh_scores(
            tenant_ids, origin_account_ids, email_keys, response_ids, submitted_ats, true
        );
    END IF;
    RETURN NULL;
END;
$$;

CREATE FUNCTION revcov_tenant_quarters_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM revcov_rebuild_scores(ARRAY[NEW.id]);
    RETURN NULL;
END;
$$;
"""

TRIGGERS = """
CREATE TRIGGER quarter_scores_on_insert AFTER INSERT ON responses
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION revcov_responses_changed();
CREATE TRIGGER quarter_scores_on_update AFTER UPDATE ON responses
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION revcov_responses_changed();
CREATE TRIGGER quarter_scores_on_delete AFTER DELETE ON responses
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION revcov_responses_changed();

CREATE TRIGGER quarter_scores_on_insert AFTER INSERT ON contacts
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION revcov_contacts_changed();
CREATE TRIGGER quarter_scores_on_update AFTER UPDATE ON contacts
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION revcov_contacts_changed();
CREATE TRIGGER quarter_scores_on_delete AFTER DELETE ON contacts
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION revcov_contacts_changed();

CREATE TRIGGER quarter_scores_on_quarter_change
    AFTER UPDATE OF timezone, fiscal_year_start_month ON tenants
    FOR EACH ROW
    WHEN (
        OLD.timezone IS DISTINCT FROM NEW.timezone
        OR OLD.fiscal_year_start_month IS DISTINCT FROM NEW.fiscal_year_start_month
    )
    EXECUTE FUNCTION revcov_tenant_quarters_changed();
"""


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    _execute_script(TABLES)
    _execute_script(FUNCTIONS)
    _execute_script(TRIGGERS)
    # Building the state reads every scored response once, which can outlast the
    # service's statement timeout on a large database.
    op.execute("SET LOCAL statement_timeout = 0")
    op.execute("SELECT revcov_rebuild_scores(ARRAY(SELECT id FROM tenants))")


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    for table in ("responses", "contacts"):
        for event in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER quarter_scores_on_{event} ON {table}")
    op.execute("DROP TRIGGER quarter_scores_on_quarter_change ON tenants")
    op.execute("DROP FUNCTION revcov_tenant_quarters_changed()")
    op.execute("DROP FUNCTION revcov_contacts_changed()")
    op.execute("DROP FUNCTION revcov_responses_changed()")
    op.execute(
        "DROP FUNCTION revcov_refresh_scores("
        "uuid[], bigint[], text[], bigint[], timestamptz[], boolean)"
    )
    op.execute("DROP FUNCTION revcov_rebuild_scores(uuid[])")
    op.execute(
        "DROP FUNCTION revcov_write_scores("
        "uuid[], timestamptz[], bigint[], uuid[], timestamptz[], text[], bigint[], uuid[])"
    )
    op.execute("DROP FUNCTION revcov_quarter_end(timestamptz, text, integer)")
    op.execute("DROP FUNCTION revcov_quarter_start(timestamptz, text, integer)")
    op.execute("DROP INDEX ix_responses_tenant_id_origin_submitted_at")
    op.execute("DROP TABLE respondent_quarter_scores")
    op.execute("DROP TABLE account_quarter_scores")
