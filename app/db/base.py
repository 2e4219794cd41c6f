"""Declarative base with a constraint naming convention, so migrations name constraints alike."""

from sqlalchemy import Boolean, Label, MetaData, literal_column
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# In `INSERT ... ON CONFLICT DO UPDATE ... RETURNING INSERTED`, true for a row the statement
# inserted and false for one it updated: PostgreSQL sets `xmax` only on the updated row.
INSERTED: Label[bool] = literal_column("xmax = 0", Boolean).label("inserted")
