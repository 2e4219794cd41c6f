"""Run the Alembic migrations from code, and compare the database with the newest revision."""

from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

# alembic.ini sits at the top of the source tree, next to the `app` package.
ALEMBIC_INI = Path(__file__).resolve().parents[2] / "alembic.ini"


def _alembic_ini() -> str:
    if not ALEMBIC_INI.is_file():
        # TODO: the wheel contains only the `app` package, so migrations need an editable install.
        raise RuntimeError(
            f"{ALEMBIC_INI} is missing: revcov runs its migrations from the source tree; "
            "install it with `pip install -e .` from a checkout."
        )
    return str(ALEMBIC_INI)


def alembic_config(database_url: str) -> Config:
    config = Config(_alembic_ini())
    config.attributes["database_url"] = database_url
    return config


def upgrade_to_head(database_url: str) -> None:
    """Apply all pending migrations. Call it outside a running event loop."""
    command.upgrade(alembic_config(database_url), "head")


@lru_cache
def head_revision() -> str | None:
    return ScriptDirectory.from_config(Config(_alembic_ini())).get_current_head()


async def current_revision(connection: AsyncConnection) -> str | None:
    result = await connection.execute(text("SELECT version_num FROM alembic_version"))
    return result.scalar_one_or_none()
