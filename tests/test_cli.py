"""The `revcov` command: settings errors, tenant names, and the embedded database's life cycle.

Tests that start the embedded server run `revcov` in a subprocess, with REVCOV_DATA_DIR in
a temporary directory, so each command starts, attaches to and stops the server as a user's
command does.
"""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from app.cli import _database_failure, cli
from app.db.embedded import HANDLE_PIDS_FILE, remove_exited_handles
from app.settings import Settings, get_settings

SERVER_STOP_TIMEOUT_SECONDS = 30


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Clear REVCOV_* variables and the cached settings, so each test sets its own."""
    for name in list(os.environ):
        if name.startswith("REVCOV_") and name != "REVCOV_TEST_DATABASE_URL":
            monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def revcov_env() -> dict[str, str]:
    """Return this process's environment without REVCOV_* settings, with JSON logs."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("REVCOV_")}
    env["REVCOV_LOG_FORMAT"] = "json"
    return env


def run_revcov(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from app.cli import main; main()", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def exited_pid() -> int:
    """Return the PID of a process that has exited and been reaped."""
    process = subprocess.Popen([sys.executable, "-c", ""])
    process.wait()
    return process.pid


@pytest.fixture
def pgdata(tmp_path: Path) -> Iterator[Path]:
    """The PGDATA path under `tmp_path/.revcov`. Teardown stops a server left running there."""
    path = tmp_path / ".revcov" / "pgdata"
    yield path
    postmaster = path / "postmaster.pid"
    if postmaster.exists():
        pid = int(postmaster.read_text().split()[0])
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + SERVER_STOP_TIMEOUT_SECONDS
        while process_exists(pid) and time.monotonic() < deadline:
            time.sleep(0.2)


# --- Settings ---------------------------------------------------------------------------


def test_invalid_database_url_hides_value(settings_env: pytest.MonkeyPatch) -> None:
    settings_env.setenv("REVCOV_DATABASE_URL", "pg://app:S3cret@db:5432/revcov")

    result = CliRunner().invoke(cli, ["migrate"])

    assert result.exit_code == 2
    assert result.stderr.startswith("revcov: invalid setting REVCOV_DATABASE_URL: ")
    assert "PostgreSQL URL" in result.stderr
    assert "S3cret" not in result.output
    assert "pg://" not in result.output
    assert "Traceback" not in result.output


def test_invalid_settings_one_line_each(settings_env: pytest.MonkeyPatch) -> None:
    settings_env.setenv("REVCOV_PORT", "0")
    settings_env.setenv("REVCOV_LOG_FORMAT", "xml")

    result = CliRunner().invoke(cli, ["tenants", "create", "acme"])

    lines = result.stderr.splitlines()
    assert result.exit_code == 2
    assert len(lines) == 2
    assert lines[0].startswith("revcov: invalid setting REVCOV_PORT: ")
    assert lines[1].startswith("revcov: invalid setting REVCOV_LOG_FORMAT: ")
    assert "xml" not in result.stderr


@pytest.mark.parametrize("value", ["1e-9", "0.05", "nan", "-1"])
def test_statistics_interval_rejected(settings_env: pytest.MonkeyPatch, value: str) -> None:
    settings_env.setenv("REVCOV_STATISTICS_CHECK_INTERVAL_SECONDS", value)

    result = CliRunner().invoke(cli, ["migrate"])

    assert result.exit_code == 2
    assert result.stderr.startswith(
        "revcov: invalid setting REVCOV_STATISTICS_CHECK_INTERVAL_SECONDS: "
    )


@pytest.mark.parametrize("value", ["", "   "])
def test_blank_metrics_token_rejected(settings_env: pytest.MonkeyPatch, value: str) -> None:
    settings_env.setenv("REVCOV_METRICS_TOKEN", value)

    result = CliRunner().invoke(cli, ["migrate"])

    assert result.exit_code == 2
    assert result.stderr.startswith("revcov: invalid setting REVCOV_METRICS_TOKEN: ")
    assert "unset the variable" in result.stderr


@pytest.mark.parametrize(
    "value",
    [
        "not-a-url",
        "ftp://revcov.example.com",
        "https://",
        "https://x.example/?a=1",
        "https://x.example?",
        "https://x.example#",
        "https://x.example:99999",
        "https://x.example:abc",
        "https://x example.com",
        "https://x.example\\evil.example",
        "https://revcov.example.com/\u200b",
        "https://r\u00e9vcov.example.com",
        "http://x.example;foo",
        "http://-x-",
        "http://x..example",
        "http://1.2.3.4.5",
        "http://x.example/<script>",
        "http://x.example/%zz",
        "http://[::1",
        "http://[x.example]/",
    ],
)
def test_invalid_public_url_rejected(settings_env: pytest.MonkeyPatch, value: str) -> None:
    settings_env.setenv("REVCOV_PUBLIC_URL", value)

    result = CliRunner().invoke(cli, ["migrate"])

    assert result.exit_code == 2
    assert result.stderr.startswith("revcov: invalid setting REVCOV_PUBLIC_URL: ")
    assert repr(value) in result.stderr


@pytest.mark.parametrize(
    "url", ["postgresql://h:abc/db", "postgresql://[::1", "postgresql://app:S3cret@h:99999/db"]
)
def test_invalid_database_port_one_line(settings_env: pytest.MonkeyPatch, url: str) -> None:
    settings_env.setenv("REVCOV_DATABASE_URL", url)

    result = CliRunner().invoke(cli, ["migrate"])

    assert result.exit_code == 2
    assert result.stderr.startswith("revcov: invalid setting REVCOV_DATABASE_URL: ")
    assert "S3cret" not in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("sslmode=bogus", "invalid sslmode 'bogus'"),
        ("ssl=on", "invalid ssl 'on'"),
        ("foo=bar&application_name=x", "unknown query parameters (application_name, foo)"),
        ("ssl=require&ssl=disable", "more than once (ssl)"),
    ],
)
def test_invalid_database_query_one_line(
    settings_env: pytest.MonkeyPatch, query: str, reason: str
) -> None:
    settings_env.setenv("REVCOV_DATABASE_URL", f"postgresql://app:S3cret@db.internal/x?{query}")

    result = CliRunner().invoke(cli, ["migrate"])

    assert result.exit_code == 2
    assert result.stderr.startswith("revcov: invalid setting REVCOV_DATABASE_URL: ")
    assert reason in result.stderr
    assert "S3cret" not in result.output


def test_database_sslmode_read_as_ssl() -> None:
    settings = Settings(database_url="postgresql://app:pw@db.internal/revcov?sslmode=verify-full")

    assert settings.database_url is not None
    url = make_url(settings.database_url.get_secret_value())
    assert dict(url.query) == {"ssl": "verify-full"}
    assert url.password == "pw"


@pytest.mark.parametrize("value", ["metrics\u200btoken-0123456789", "metrics token 0123456789"])
def test_metrics_token_outside_printable_ascii_rejected(
    settings_env: pytest.MonkeyPatch, value: str
) -> None:
    settings_env.setenv("REVCOV_METRICS_TOKEN", value)

    result = CliRunner().invoke(cli, ["migrate"])

    assert result.exit_code == 2
    assert result.stderr.startswith("revcov: invalid setting REVCOV_METRICS_TOKEN: ")
    assert "printable ASCII" in result.stderr
    assert "0123456789" not in result.stderr


def test_metrics_token_whitespace_dropped(settings_env: pytest.MonkeyPatch) -> None:
    # A token read from a secret file often ends in a newline, which no header carries.
    settings_env.setenv("REVCOV_METRICS_TOKEN", "metrics-token-0123456789\n")

    token = Settings().metrics_token

    assert token is not None
    assert token.get_secret_value() == "metrics-token-0123456789"


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000", "https://[::1]:8443/revcov", "https://xn--rvcov-bsa.example/"]
)
def test_public_url_forms_accepted(settings_env: pytest.MonkeyPatch, url: str) -> None:
    settings_env.setenv("REVCOV_PUBLIC_URL", url)

    assert Settings().public_url == url


def test_public_url_credentials_not_shown(settings_env: pytest.MonkeyPatch) -> None:
    settings_env.setenv("REVCOV_PUBLIC_URL", "https://user:S3cret@revcov.example.com")

    result = CliRunner().invoke(cli, ["migrate"])

    assert result.exit_code == 2
    assert "user name, password" in result.stderr
    assert "S3cret" not in result.stderr


def test_unreachable_database_one_line() -> None:
    # Nothing listens on port 1 of the loopback address.
    env = {**revcov_env(), "REVCOV_DATABASE_URL": "postgresql://app:S3cret@127.0.0.1:1/revcov"}

    result = run_revcov("migrate", cwd=Path.cwd(), env=env)

    lines = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert result.returncode == 1
    assert len(lines) == 1
    assert lines[0].startswith("revcov: cannot use the database: ")
    assert "S3cret" not in result.stderr


def test_missing_database_one_line(database_url: str) -> None:
    missing = make_url(database_url).set(database="revcov_no_such_database")

    env = {**revcov_env(), "REVCOV_DATABASE_URL": missing.render_as_string(hide_password=False)}

    result = run_revcov("tenants", "create", "acme", cwd=Path.cwd(), env=env)

    lines = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert result.returncode == 1
    assert lines == [
        'revcov: cannot use the database: database "revcov_no_such_database" does not exist. '
        "Check REVCOV_DATABASE_URL and that the server accepts connections."
    ]


def test_production_without_database_url(settings_env: pytest.MonkeyPatch) -> None:
    settings_env.setenv("REVCOV_ENVIRONMENT", "production")

    result = CliRunner().invoke(cli, ["migrate"])

    assert result.exit_code == 2
    assert result.stderr.startswith("revcov: invalid settings: REVCOV_DATABASE_URL is required")


@pytest.mark.parametrize("level", ["DEBUG", "Info", "warning"])
def test_log_level_any_case(level: str) -> None:
    assert Settings(log_level=level).log_level == level.lower()


@pytest.mark.parametrize(
    "url",
    [
        "postgres://app:pw@db:5432/revcov",
        "postgresql://app:pw@db:5432/revcov",
        "postgresql+psycopg://app:pw@db:5432/revcov",
        "postgresql+psycopg2://app:pw@db:5432/revcov",
        "postgresql+asyncpg://app:pw@db:5432/revcov",
    ],
)
def test_database_url_uses_asyncpg(url: str) -> None:
    database_url = Settings(database_url=url).database_url

    assert database_url is not None
    assert database_url.get_secret_value() == "postgresql+asyncpg://app:pw@db:5432/revcov"


# --- tenants create ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "   ", "\t"])
def test_tenant_name_blank_rejected(
    name: str, settings_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings_env.setenv("REVCOV_DATA_DIR", str(tmp_path / "data"))

    result = CliRunner().invoke(cli, ["tenants", "create", name])

    assert result.exit_code == 2
    assert "tenant name is empty" in result.stderr
    assert not (tmp_path / "data").exists()


def test_tenant_name_too_long_rejected(settings_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings_env.setenv("REVCOV_DATA_DIR", str(tmp_path / "data"))

    result = CliRunner().invoke(cli, ["tenants", "create", "x" * 201])

    assert result.exit_code == 2
    assert "201 characters" in result.stderr
    assert not (tmp_path / "data").exists()


def test_unmigrated_database_one_line(scratch_database: str, tmp_path: Path) -> None:
    env = {**revcov_env(), "REVCOV_DATABASE_URL": scratch_database}

    result = run_revcov("tenants", "list", cwd=tmp_path, env=env)

    lines = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert result.returncode == 1
    assert len(lines) == 1
    assert "run `revcov migrate` first" in lines[0]


def test_newer_schema_one_line(scratch_database: str, tmp_path: Path) -> None:
    env = {**revcov_env(), "REVCOV_DATABASE_URL": scratch_database}
    assert run_revcov("migrate", cwd=tmp_path, env=env).returncode == 0
    asyncio.run(_set_revision(scratch_database, "ffffeeee0001"))

    result = run_revcov("migrate", cwd=tmp_path, env=env)

    lines = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert result.returncode == 1
    assert len(lines) == 1
    assert "revision 'ffffeeee0001', which this release does not know" in lines[0]


async def _set_revision(database_url: str, revision: str) -> None:
    dsn = make_url(database_url).set(drivername="postgresql")
    connection = await asyncpg.connect(dsn.render_as_string(hide_password=False))
    try:
        await connection.execute("UPDATE alembic_version SET version_num = $1", revision)
    finally:
        await connection.close()


def test_tenants_listed_and_key_created(database_url: str, tmp_path: Path) -> None:
    env = {**revcov_env(), "REVCOV_DATABASE_URL": database_url}
    created = json.loads(run_revcov("tenants", "create", "initech", cwd=tmp_path, env=env).stdout)

    listed = run_revcov("tenants", "list", cwd=tmp_path, env=env)
    key = run_revcov(
        "tenants", "create-key", created["tenant_id"], "--scope", "read", cwd=tmp_path, env=env
    )
    unknown = run_revcov("tenants", "create-key", str(uuid.uuid4()), cwd=tmp_path, env=env)

    tenants = [json.loads(line) for line in listed.stdout.splitlines()]
    assert {"tenant_id": created["tenant_id"], "name": "initech"}.items() <= next(
        tenant.items() for tenant in tenants if tenant["tenant_id"] == created["tenant_id"]
    )
    assert key.returncode == 0, key.stderr
    assert json.loads(key.stdout)["scopes"] == ["read"]
    assert json.loads(key.stdout)["api_key"].startswith(
        f"rcv_{uuid.UUID(created['tenant_id']).hex}_"
    )
    assert unknown.returncode == 1
    assert "no tenant" in unknown.stderr


def test_tenants_create_notes_new_database(tmp_path: Path, pgdata: Path) -> None:
    env = revcov_env()  # REVCOV_DATA_DIR unset: ./.revcov in the working directory

    first = run_revcov("tenants", "create", "acme", cwd=tmp_path, env=env)
    second = run_revcov("tenants", "create", "globex", cwd=tmp_path, env=env)

    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["api_key"].startswith("rcv_")
    assert f"created a new embedded database under {tmp_path.resolve() / '.revcov'}." in (
        first.stderr
    )
    assert "`revcov serve` with the same REVCOV_DATA_DIR" in first.stderr
    assert "Running upgrade" in first.stderr
    assert "Context impl" not in first.stderr + second.stderr
    assert "Will assume" not in first.stderr + second.stderr
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["api_key"].startswith("rcv_")
    assert "new embedded database" not in second.stderr
    assert not (pgdata / "postmaster.pid").exists()


# --- The embedded server's handle list --------------------------------------------------


def test_exited_handles_removed(tmp_path: Path) -> None:
    handles = tmp_path / HANDLE_PIDS_FILE
    dead = exited_pid()
    handles.write_text(json.dumps([dead, os.getpid()]))

    removed = remove_exited_handles(tmp_path)

    assert removed == [dead]
    assert json.loads(handles.read_text()) == [os.getpid()]


def test_truncated_handle_list_reset(tmp_path: Path) -> None:
    handles = tmp_path / HANDLE_PIDS_FILE
    handles.write_text("[123")

    removed = remove_exited_handles(tmp_path)

    assert removed == []
    assert json.loads(handles.read_text()) == []


def test_server_stops_after_killed_process(tmp_path: Path, pgdata: Path) -> None:
    env = revcov_env()
    created = run_revcov("migrate", cwd=tmp_path, env=env)
    assert created.returncode == 0, created.stderr
    assert "created a new embedded database" in created.stderr
    assert not (pgdata / "postmaster.pid").exists()
    # What a revcov process killed with SIGKILL while attached leaves behind.
    dead = exited_pid()
    (pgdata / HANDLE_PIDS_FILE).write_text(json.dumps([dead]))

    result = run_revcov("migrate", cwd=tmp_path, env=env)

    assert result.returncode == 0, result.stderr
    assert "new embedded database" not in result.stderr
    assert dead not in json.loads((pgdata / HANDLE_PIDS_FILE).read_text())
    assert not (pgdata / "postmaster.pid").exists()


def test_serve_on_busy_port_exits(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        env = revcov_env() | {"REVCOV_DATA_DIR": str(tmp_path / "data")}

        result = run_revcov("serve", "--port", str(port), cwd=tmp_path, env=env)

    assert result.returncode == 2, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "--port" in result.stderr
    # It stopped before starting a database for a server that could not listen.
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("port", ["0", "70000"])
def test_serve_port_out_of_range_rejected(tmp_path: Path, port: str) -> None:
    env = revcov_env() | {"REVCOV_DATA_DIR": str(tmp_path / "data")}

    result = run_revcov("serve", "--port", port, cwd=tmp_path, env=env)

    assert result.returncode == 2, result.stderr
    assert "Invalid value for '--port'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()


def test_read_only_database_one_line() -> None:
    error = asyncpg.exceptions.ReadOnlySQLTransactionError(
        "cannot execute INSERT in a read-only transaction"
    )

    line = _database_failure(error)

    assert line is not None
    assert "read-only transaction" in line
    assert "Point REVCOV_DATABASE_URL at the primary server" in line


def test_data_dir_that_is_a_file_one_line(tmp_path: Path) -> None:
    data_file = tmp_path / "data"
    data_file.write_text("")
    env = revcov_env() | {"REVCOV_DATA_DIR": str(data_file)}

    result = run_revcov("tenants", "list", cwd=tmp_path, env=env)

    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("revcov: cannot use REVCOV_DATA_DIR ")
    assert "is a file, not a directory" in result.stderr
    assert "Traceback" not in result.stderr
