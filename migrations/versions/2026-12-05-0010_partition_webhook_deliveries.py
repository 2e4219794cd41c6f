"""Partition raw webhook deliveries by month and keep their delivery keys in their own table.

Old partitions are dropped after the retention period, so the unique key that drops
repeated deliveries moves to `webhook_delivery_keys`, whose rows outlive the partitions.
A partitioned table's unique keys must contain the partition column, and the delivery
key alone must stay unique, which is the second reason for the separate table. Rows
without a monthly partition go to the default partition, so an insert never fails for
want of one. `revcov maintain` creates the coming months' partitions.

Revision ID: 3f1d9a6c2b84
Revises: 9d3f1b6a2c48
Create Date: 2026-12-05 00:10:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "3f1d9a6c2b84"
down_revision: str | None = "9d3f1b6a2c48"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    "tenant_id, id, endpoint_id, delivery_key, source, event_type, status, error, "
    'response_id, "fetch", attempts, next_attempt_at, content_type, headers, body, '
    "received_at, erased_at"
)

# The columns after `tenant_id` and `id`, the same before and after partitioning.
OTHER_COLUMNS = """
    endpoint_id text NOT NULL,
    delivery_key text NOT NULL,
    source text NOT NULL,
    event_type text,
    status text NOT NULL,
    error text,
    response_id text,
    "fetch" jsonb,
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    content_type text,
    headers jsonb NOT NULL,
    body bytea NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    erased_at timestamptz,
"""

# One partition per month that holds rows, and the current and next two months.
CREATE_MONTHLY_PARTITIONS = """
DO $$
DECLARE
    month date;
BEGIN
    FOR month IN
        SELECT generate_series(
            date_trunc('month', least(
                coalesce((SELECT min(received_at) FROM webhook_deliveries_unpartitioned), now()),
                now()
            ) AT TIME ZONE 'UTC'),
            date_trunc('month', now() AT TIME ZONE 'UTC') + interval '2 months',
            interval '1 month'
        )::date
    LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF webhook_deliveries FOR VALUES FROM (%L) TO (%L)',
            'webhook_deliveries_p' || to_char(month, 'YYYY_MM'),
            (month::timestamp AT TIME ZONE 'UTC'),
            ((month + interval '1 month')::timestamp AT TIME ZONE 'UTC')
        );
    END LOOP;
END
$$
"""


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute("ALTER TABLE webhook_deliveries RENAME TO webhook_deliveries_unpartitioned")
    for index in (
        "pk_webhook_deliveries",
        "uq_webhook_deliveries_tenant_id_endpoint_id_delivery_key",
        "ix_webhook_deliveries_tenant_id_status",
        "ix_webhook_deliveries_pending_next_attempt_at",
    ):
        op.execute(f"ALTER INDEX {index} RENAME TO {index}_old")
    op.execute("ALTER SEQUENCE webhook_deliveries_id_seq RENAME TO webhook_deliveries_id_seq_old")

    # PostgreSQL before 17 has no identity columns on partitioned tables, so a sequence.
    op.execute("CREATE SEQUENCE webhook_deliveries_id_seq AS bigint")
    op.execute(
        f"""
        CREATE TABLE webhook_deliveries (
            tenant_id uuid NOT NULL,
            id bigint NOT NULL DEFAULT nextval('webhook_deliveries_id_seq'),
            {OTHER_COLUMNS}
            CONSTRAINT pk_webhook_deliveries PRIMARY KEY (tenant_id, id, received_at),
            CONSTRAINT fk_webhook_deliveries_tenant_id_endpoint_id_webhook_endpoints
                FOREIGN KEY (tenant_id, endpoint_id)
                REFERENCES webhook_endpoints (tenant_id, id) ON DELETE CASCADE
        ) PARTITION BY RANGE (received_at)
        """
    )
    op.execute("ALTER SEQUENCE webhook_deliveries_id_seq OWNED BY webhook_deliveries.id")
    op.execute(
        "CREATE INDEX ix_webhook_deliveries_tenant_id_status "
        "ON webhook_deliveries (tenant_id, status)"
    )
    op.execute(
        "CREATE INDEX ix_webhook_deliveries_pending_next_attempt_at "
        "ON webhook_deliveries (next_attempt_at) WHERE status = 'pending'"
    )
    op.execute("CREATE TABLE webhook_deliveries_default PARTITION OF webhook_deliveries DEFAULT")
    op.execute(CREATE_MONTHLY_PARTITIONS)
    op.execute(
        f"INSERT INTO webhook_deliveries ({COLUMNS}) "
        f"SELECT {COLUMNS} FROM webhook_deliveries_unpartitioned"
    )
    op.execute(
        "SELECT setval('webhook_deliveries_id_seq', "
        "coalesce((SELECT max(id) FROM webhook_deliveries), 0) + 1, false)"
    )

    op.execute(
        """
        CREATE TABLE webhook_delivery_keys (
            tenant_id uuid NOT NULL,
            endpoint_id text NOT NULL,
            delivery_key text NOT NULL,
            received_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_webhook_delivery_keys
                PRIMARY KEY (tenant_id, endpoint_id, delivery_key),
            CONSTRAINT fk_webhook_delivery_keys_tenant_id_endpoint_id_webhook_endpoints
                FOREIGN KEY (tenant_id, endpoint_id)
                REFERENCES webhook_endpoints (tenant_id, id) ON DELETE CASCADE
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_webhook_delivery_keys_received_at ON webhook_delivery_keys (received_at)"
    )
    op.execute(
        "INSERT INTO webhook_delivery_keys (tenant_id, endpoint_id, delivery_key, received_at) "
        "SELECT tenant_id, endpoint_id, delivery_key, received_at "
        "FROM webhook_deliveries_unpartitioned"
    )
    op.execute("DROP TABLE webhook_deliveries_unpartitioned")


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute("ALTER TABLE webhook_deliveries RENAME TO webhook_deliveries_partitioned")
    for index in (
        "pk_webhook_deliveries",
        "ix_webhook_deliveries_tenant_id_status",
        "ix_webhook_deliveries_pending_next_attempt_at",
    ):
        op.execute(f"ALTER INDEX {index} RENAME TO {index}_partitioned")
    op.execute(
        "ALTER SEQUENCE webhook_deliveries_id_seq RENAME TO webhook_deliveries_id_seq_partitioned"
    )
    op.execute(
        f"""
        CREATE TABLE webhook_deliveries (
            tenant_id uuid NOT NULL,
            id bigint GENERATED ALWAYS AS IDENTITY NOT NULL,
            {OTHER_COLUMNS}
            CONSTRAINT pk_webhook_deliveries PRIMARY KEY (tenant_id, id),
            CONSTRAINT uq_webhook_deliveries_tenant_id_endpoint_id_delivery_key
                UNIQUE (tenant_id, endpoint_id, delivery_key),
            CONSTRAINT fk_webhook_deliveries_tenant_id_endpoint_id_webhook_endpoints
                FOREIGN KEY (tenant_id, endpoint_id)
                REFERENCES webhook_endpoints (tenant_id, id) ON DELETE CASCADE
        )
        """
    )
    op.execute(
        "CREATE INDEX ix_webhook_deliveries_tenant_id_status "
        "ON webhook_deliveries (tenant_id, status)"
    )
    op.execute(
        "CREATE INDEX ix_webhook_deliveries_pending_next_attempt_at "
        "ON webhook_deliveries (next_attempt_at) WHERE status = 'pending'"
    )
    op.execute(
        f"INSERT INTO webhook_deliveries ({COLUMNS}) OVERRIDING SYSTEM VALUE "
        f"SELECT {COLUMNS} FROM webhook_deliveries_partitioned"
    )
    op.execute(
        "SELECT setval(pg_get_serial_sequence('webhook_deliveries', 'id'), "
        "coalesce((SELECT max(id) FROM webhook_deliveries), 0) + 1, false)"
    )
    op.execute("DROP TABLE webhook_deliveries_partitioned")
    op.execute("DROP TABLE webhook_delivery_keys")
