"""Run the Alembic migrations from code, and compare the database with the newest revision.

The scripts live in `migrations/` of the source tree, which the wheel installs as the
package `app.schema_migrations`, so an editable install and an install from a wheel find
them in the same way. `alembic.ini` serves only the `alembic` command in a checkout, for
writing new revisions.
"""

import re
from functools import lru_cache
from importlib.resources import as_file, files

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import AsyncConnection

SCRIPTS_PACKAGE = "app.schema_migrations"


@lru_cache
def _script_location() -> str:
    # Both kinds of install give a real directory, so `as_file` returns it without a copy.
    with as_file(files(SCRIPTS_PACKAGE)) as location:
        return str(location)


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", _script_location())
    return config


def alembic_config(database_url: str) -> Config:
    config = _config()
    config.attributes["database_url"] = database_url
    return config


def upgrade_to_head(database_url: str) -> None:
    """Apply all pending migrations. Call it outside a running event loop."""
    command.upgrade(alembic_config(database_url), "head")


@lru_cache
def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()


# The revision `/readyz` reports for a version table it cannot read.
UNREADABLE_REVISION = "unreadable"
# The form of the revision ids that Alembic generates, which every migration here uses.
REVISION_ID = re.compile(r"[0-9a-f]{12}")


@lru_cache
def known_revisions() -> frozenset[str]:
    """Return the revisions of this release's migrations, the newest included."""
    scripts = ScriptDirectory.from_config(_config())
    return frozenset(script.revision for script in scripts.walk_revisions())


async def current_revision(connection: AsyncConnection) -> str | None:
    """Return the schema's revision, or None for a database that was never migrated."""
    table = await connection.scalar(text("SELECT to_regclass('alembic_version')"))
    if table is None:
        return None
    try:
        result = await connection.execute(
            text("SELECT version_num::text FROM alembic_version WHERE version_num IS NOT NULL")
        )
    except ProgrammingError:
        # A version table that is not Alembic's, such as one without `version_num`.
        return UNREADABLE_REVISION
    # Alembic keeps one row per head, and revcov's migrations have a single head. So
    # several rows come from elsewhere, and joined they match no revision.
    revisions = sorted(result.scalars())
    return ",".join(revisions) if revisions else None
