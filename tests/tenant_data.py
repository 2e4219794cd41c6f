"""A digest of every row a tenant owns, to check that a request changed none of them."""

import uuid

from fastapi import FastAPI
from sqlalchemy import Table, text

from app.db.session import session_scope
from app.models import Base


def tenant_tables() -> list[Table]:
    """Every table with a `tenant_id` column, plus `tenants` itself."""
    return [
        table
        for table in Base.metadata.sorted_tables
        if "tenant_id" in table.columns or table.name == "tenants"
    ]


async def tenant_snapshot(app: FastAPI, tenant_id: uuid.UUID) -> dict[str, tuple[int, str]]:
    """Map each table to the count and MD5 of the tenant's rows, in a stable order.

    Any insert, update or delete of the tenant's rows changes the snapshot.
    """
    snapshot = {}
    async with session_scope(app.state.sessionmaker) as session:
        for table in tenant_tables():
            column = "id" if table.name == "tenants" else "tenant_id"
            # Table and column names come from the models, never from input.
            statement = text(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text),"
                f" '')) FROM {table.name} AS t WHERE t.{column} = :tenant_id"
            )
            count, digest = (await session.execute(statement, {"tenant_id": tenant_id})).one()
            snapshot[table.name] = (count, digest)
    return snapshot
