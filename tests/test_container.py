"""The container image's recipe, checked without a Docker engine: what it copies exists and
reaches the build, its settings are real settings, its commands exist, and `serve` leaves
migrations to `revcov migrate` when REVCOV_MIGRATE_ON_START is false."""

import fnmatch
import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from typer.main import get_command
from typer.testing import CliRunner

from app import cli as cli_module
from app.settings import Settings, get_settings
from tests.test_scopes import PUBLIC_ROUTES

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions() -> list[tuple[str, str]]:
    """Return the Dockerfile's instructions as (keyword, arguments), continuations joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    parsed = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            parsed.append((keyword.upper(), arguments.strip()))
    return parsed


def ignored(path: str) -> bool:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return any(
        fnmatch.fnmatch(path, pattern) or path.startswith(pattern.rstrip("/") + "/")
        for pattern in patterns
    )


class TestDockerfile:
    def test_copied_sources_exist(self) -> None:
        copied = [
            source
            for keyword, arguments in instructions()
            if keyword == "COPY" and not arguments.startswith("--from=")
            for source in shlex.split(arguments)[:-1]
        ]

        assert copied
        for source in copied:
            assert (ROOT / source).exists(), source
            assert not ignored(source), source

    def test_app_files_reach_build(self) -> None:
        needed = ["app", "migrations", "pyproject.toml", "README.md"]

        assert [path for path in needed if ignored(path)] == []

    def test_runtime_installs_the_wheel(self) -> None:
        # An editable install would run the code from a copy of the source tree.
        runs = [arguments for keyword, arguments in instructions() if keyword == "RUN"]

        assert any("pip wheel" in run for run in runs)
        assert any("pip install --no-deps /tmp/wheels/" in run for run in runs)
        assert not any(" -e " in run for run in runs)

    def test_environment_names_settings(self) -> None:
        names = [
            name
            for keyword, arguments in instructions()
            if keyword == "ENV"
            for name, _ in re.findall(r"(\w+)=(\S+)", arguments)
            if name.startswith("REVCOV_")
        ]

        assert "REVCOV_MIGRATE_ON_START" in names
        for name in names:
            assert name.removeprefix("REVCOV_").lower() in Settings.model_fields, name

    def test_commands_exist(self) -> None:
        commands = get_command(cli_module.cli).commands  # type: ignore[attr-defined]
        cmd = next(arguments for keyword, arguments in instructions() if keyword == "CMD")

        assert cmd == '["revcov", "serve"]'
        assert "serve" in commands
        assert "migrate" in commands
        assert "revcov revcov migrate" in DOCKERFILE

    def test_health_check_is_public_route(self) -> None:
        check = next(arguments for keyword, arguments in instructions() if keyword == "HEALTHCHECK")
        path = re.search(r"'http://127\.0\.0\.1:' \+ port \+ '(/\w+)'", check)

        assert path is not None
        assert ("GET", path.group(1)) in PUBLIC_ROUTES

    def test_runs_as_non_root(self) -> None:
        users = [arguments for keyword, arguments in instructions() if keyword == "USER"]

        assert users == ["revcov"]


class TestServeMigrations:
    @pytest.fixture
    def calls(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
        """Run `serve` without a server: record migrations and the start of uvicorn."""
        recorded: list[str] = []
        for name in list(os.environ):
            if name.startswith("REVCOV_"):
                monkeypatch.delenv(name)
        monkeypatch.setenv("REVCOV_DATABASE_URL", "postgresql://revcov@db.invalid:5432/revcov")
        monkeypatch.setattr(cli_module, "configure_logging", lambda *args: None)
        monkeypatch.setattr(cli_module, "upgrade_to_head", lambda url: recorded.append("migrate"))

        def run(app: FastAPI, **options: object) -> None:
            recorded.append("serve")

        monkeypatch.setattr(uvicorn, "run", run)
        get_settings.cache_clear()
        yield recorded
        get_settings.cache_clear()

    def test_serve_migrates_by_default(self, calls: list[str]) -> None:
        result = CliRunner().invoke(cli_module.cli, ["serve"])

        assert result.exit_code == 0, result.output
        assert calls == ["migrate", "serve"]

    def test_image_setting_skips_migrations(
        self, calls: list[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("REVCOV_MIGRATE_ON_START", "false")

        result = CliRunner().invoke(cli_module.cli, ["serve"])

        assert result.exit_code == 0, result.output
        assert calls == ["serve"]
