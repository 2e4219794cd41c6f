"""The wheel: it lists every package, and an install from it migrates a database on its own,
without the source tree."""

import asyncio
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from app.db.migrations import head_revision

ROOT = Path(__file__).resolve().parents[1]
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_package_list_names_every_app_package() -> None:
    inits = (ROOT / "app").rglob("__init__.py")
    found = {".".join(init.parent.relative_to(ROOT).parts) for init in inits}

    assert set(SETUPTOOLS["packages"]) == found | {"app.schema_migrations"}
    assert SETUPTOOLS["package-dir"] == {"app.schema_migrations": "migrations"}


async def _revision(database_url: str) -> str:
    dsn = make_url(database_url).set(drivername="postgresql")
    connection = await asyncpg.connect(dsn.render_as_string(hide_password=False))
    try:
        return str(await connection.fetchval("SELECT version_num FROM alembic_version"))
    finally:
        await connection.close()


def test_wheel_install_migrates(scratch_database: str, tmp_path: Path) -> None:
    source, wheels, target = tmp_path / "source", tmp_path / "wheels", tmp_path / "site"
    # Built from a copy: setuptools would reuse files left in the checkout's build/.
    source.mkdir()
    for path in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / path, source / path)
    for path in ("app", "migrations"):
        shutil.copytree(ROOT / path, source / path, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(source)], check=True)
    [wheel] = wheels.glob("revcov-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True)
    # The installed copy comes first on the path and the source tree is not on it, so the
    # command fails if the wheel lacks the scripts.
    script = (
        "import sys, app; from app.cli import main; "
        f"assert app.__file__.startswith({str(target)!r}), app.__file__; "
        "sys.argv = ['revcov', 'migrate']; main()"
    )
    environment = {
        **os.environ,
        "PYTHONPATH": str(target),
        "REVCOV_DATABASE_URL": scratch_database,
    }

    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stderr
    assert asyncio.run(_revision(scratch_database)) == head_revision()
