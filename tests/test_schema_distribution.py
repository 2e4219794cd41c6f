"""The migrated schema can be sharded by tenant (Citus distributed tables on `tenant_id`).

Citus enforces a primary key, unique index or exclusion constraint only when it contains
the distribution column, and a foreign key between distributed tables only when both
sides include it. The check here is stricter, so that a new table or key fails at once.
Every tenant-owned table has `tenant_id`. It is the first column of the primary key, of
each unique index and exclusion constraint, and of each foreign key on both sides. A key
that leads with `tenant_id` also keeps each lookup on it a
single-tenant, so single-shard, query.

`tenants` is the tenant itself, so its `id` plays the part of `tenant_id`: it becomes a
distributed table on `id`, co-located with the others (see docs/scaling.md).
"""

import asyncio

import asyncpg
from sqlalchemy.engine import make_url

# The distribution column of each table where it is not `tenant_id`.
TENANT_KEY_COLUMNS = {"tenants": "id"}

# Tables that hold no tenant's data and so are not distributed, each with the reason.
EXEMPT_TABLES = {
    "alembic_version": "Alembic's revision marker, which stays on the Citus coordinator.",
}

TABLES_QUERY = """
    SELECT c.oid, c.relname
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
"""

COLUMNS_QUERY = """
    SELECT a.attrelid, a.attnum, a.attname
    FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND a.attnum > 0 AND NOT a.attisdropped
"""

# Unique indexes cover primary keys, unique constraints and unique indexes without a
# constraint. An expression in the first place has attnum 0, which names no column.
UNIQUE_INDEXES_QUERY = """
    SELECT i.indrelid AS table_oid, ic.relname AS name, i.indisprimary AS is_primary,
           (i.indkey::int2[])[0] AS first_attnum
    FROM pg_index i
    JOIN pg_class ic ON ic.oid = i.indexrelid
    JOIN pg_namespace n ON n.oid = ic.relnamespace
    WHERE n.nspname = 'public' AND i.indisunique
"""

CONSTRAINTS_QUERY = """
    SELECT c.conrelid AS table_oid, c.conname AS name, c.contype::text AS kind,
           c.conkey[1] AS first_attnum, c.confrelid AS referenced_oid,
           c.confkey[1] AS first_referenced_attnum
    FROM pg_constraint c
    JOIN pg_namespace n ON n.oid = c.connamespace
    WHERE n.nspname = 'public' AND c.contype IN ('f', 'x')
"""


def _plain_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class Catalog:
    """The tables, columns, unique indexes and constraints of the `public` schema."""

    def __init__(
        self,
        tables: list[asyncpg.Record],
        columns: list[asyncpg.Record],
        unique_indexes: list[asyncpg.Record],
        constraints: list[asyncpg.Record],
    ) -> None:
        self.tables: dict[int, str] = {row["oid"]: row["relname"] for row in tables}
        self.columns: dict[tuple[int, int], str] = {
            (row["attrelid"], row["attnum"]): row["attname"] for row in columns
        }
        self.unique_indexes = unique_indexes
        self.constraints = constraints

    @classmethod
    async def load(cls, url: str) -> "Catalog":
        connection = await asyncpg.connect(_plain_dsn(url))
        try:
            return cls(
                await connection.fetch(TABLES_QUERY),
                await connection.fetch(COLUMNS_QUERY),
                await connection.fetch(UNIQUE_INDEXES_QUERY),
                await connection.fetch(CONSTRAINTS_QUERY),
            )
        finally:
            await connection.close()

    def column(self, table_oid: int, attnum: int | None) -> str | None:
        return None if attnum is None else self.columns.get((table_oid, attnum))

    def tenant_key(self, table_oid: int) -> str:
        return TENANT_KEY_COLUMNS.get(self.tables[table_oid], "tenant_id")

    def leads_with_tenant_key(self, table_oid: int, attnum: int | None) -> bool:
        return self.column(table_oid, attnum) == self.tenant_key(table_oid)

    def tenant_tables(self) -> dict[int, str]:
        return {oid: name for oid, name in self.tables.items() if name not in EXEMPT_TABLES}


def find_problems(catalog: Catalog) -> list[str]:
    """List every key of a tenant-owned table that a Citus table on `tenant_id` rejects or
    cannot enforce, as `table: problem`, sorted."""
    tenant_tables = catalog.tenant_tables()
    problems: list[str] = []

    for oid, name in tenant_tables.items():
        key = catalog.tenant_key(oid)
        if key not in {column for (table, _), column in catalog.columns.items() if table == oid}:
            problems.append(f"{name}: has no {key} column")
        if not any(row["is_primary"] and row["table_oid"] == oid for row in catalog.unique_indexes):
            problems.append(f"{name}: has no primary key")

    for row in catalog.unique_indexes:
        oid = row["table_oid"]
        if oid in tenant_tables and not catalog.leads_with_tenant_key(oid, row["first_attnum"]):
            kind = "primary key" if row["is_primary"] else "unique index"
            problems.append(
                f"{tenant_tables[oid]}: {kind} {row['name']} does not lead with "
                f"{catalog.tenant_key(oid)}"
            )

    for row in catalog.constraints:
        oid = row["table_oid"]
        if oid not in tenant_tables:
            continue
        if row["kind"] == "x" and not catalog.leads_with_tenant_key(oid, row["first_attnum"]):
            problems.append(
                f"{tenant_tables[oid]}: exclusion constraint {row['name']} does not lead with "
                f"{catalog.tenant_key(oid)}"
            )
        if row["kind"] != "f":
            continue
        referenced = row["referenced_oid"]
        if referenced not in tenant_tables:
            problems.append(
                f"{tenant_tables[oid]}: foreign key {row['name']} references "
                f"{catalog.tables.get(referenced, referenced)}, which is not a tenant table"
            )
        elif not (
            catalog.leads_with_tenant_key(oid, row["first_attnum"])
            and catalog.leads_with_tenant_key(referenced, row["first_referenced_attnum"])
        ):
            problems.append(
                f"{tenant_tables[oid]}: foreign key {row['name']} does not join "
                f"{catalog.tenant_key(oid)} to {tenant_tables[referenced]}."
                f"{catalog.tenant_key(referenced)} first"
            )

    return sorted(problems)


# Tables that break each rule once, next to one that keeps them all.
FLAWED_SCHEMA = """
    CREATE TABLE tenants (id uuid PRIMARY KEY);
    CREATE TABLE alembic_version (version_num text PRIMARY KEY);
    CREATE TABLE good (
        tenant_id uuid REFERENCES tenants (id), id bigint, code text,
        PRIMARY KEY (tenant_id, id), UNIQUE (tenant_id, code)
    );
    CREATE TABLE keyless (tenant_id uuid, note text);
    CREATE TABLE no_tenant (id bigint PRIMARY KEY);
    CREATE TABLE id_first (tenant_id uuid, id bigint, PRIMARY KEY (id, tenant_id));
    CREATE TABLE code_unique (
        tenant_id uuid, id bigint, code text, PRIMARY KEY (tenant_id, id)
    );
    CREATE UNIQUE INDEX code_unique_code ON code_unique (code);
    CREATE UNIQUE INDEX code_unique_lower ON code_unique (lower(code), tenant_id);
    CREATE TABLE child (
        tenant_id uuid, id bigint, good_id bigint, PRIMARY KEY (tenant_id, id),
        CONSTRAINT child_good_fk FOREIGN KEY (good_id, tenant_id)
            REFERENCES good (id, tenant_id),
        CONSTRAINT child_other_fk FOREIGN KEY (good_id) REFERENCES no_tenant (id)
    );
    CREATE TABLE outside (
        tenant_id uuid, version text, PRIMARY KEY (tenant_id, version),
        CONSTRAINT outside_version_fk FOREIGN KEY (version)
            REFERENCES alembic_version (version_num)
    );
"""


class TestTenantKeys:
    def test_migrated_schema_passes(self, database_url: str) -> None:
        catalog = asyncio.run(Catalog.load(database_url))

        problems = find_problems(catalog)

        assert {"tenants", "accounts", "responses", "webhook_deliveries"} <= set(
            catalog.tables.values()
        )
        assert problems == []

    def test_exempt_tables_exist(self, database_url: str) -> None:
        catalog = asyncio.run(Catalog.load(database_url))

        stale = set(EXEMPT_TABLES) - set(catalog.tables.values())

        assert stale == set(), "remove these tables from EXEMPT_TABLES"

    def test_flawed_schema_reports_each_flaw(self, scratch_database: str) -> None:
        connection_url = _plain_dsn(scratch_database)

        async def plant_and_load() -> Catalog:
            connection = await asyncpg.connect(connection_url)
            try:
                await connection.execute(FLAWED_SCHEMA)
            finally:
                await connection.close()
            return await Catalog.load(scratch_database)

        problems = find_problems(asyncio.run(plant_and_load()))

        assert problems == [
            "child: foreign key child_good_fk does not join tenant_id to good.tenant_id first",
            "child: foreign key child_other_fk does not join tenant_id to "
            "no_tenant.tenant_id first",
            "code_unique: unique index code_unique_code does not lead with tenant_id",
            "code_unique: unique index code_unique_lower does not lead with tenant_id",
            "id_first: primary key id_first_pkey does not lead with tenant_id",
            "keyless: has no primary key",
            "no_tenant: has no tenant_id column",
            "no_tenant: primary key no_tenant_pkey does not lead with tenant_id",
            "outside: foreign key outside_version_fk references alembic_version, "
            "which is not a tenant table",
        ]
