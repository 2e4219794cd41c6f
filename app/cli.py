"""The `revcov` command: serve the API, migrate the database, manage tenants, load a demo."""

import asyncio
import gc
import json
import re
import signal
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Annotated

import asyncpg
import typer
import uvicorn
from alembic.util.exc import CommandError as AlembicCommandError
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy.exc import SQLAlchemyError

from app import demo as demo_loader
from app.accounts import revenue_csv
from app.accounts.errors import RevenueCsvInvalidError, RevenueCsvRejectedError
from app.accounts.schemas import RevenueImportResult
from app.db.embedded import embedded_database_exists, open_database
from app.db.migrations import upgrade_to_head
from app.db.session import create_engine, create_sessionmaker, session_scope
from app.logging import configure_logging
from app.main import create_app
from app.settings import Settings, get_settings
from app.tenancy import service as tenant_service
from app.tenancy.models import API_KEY_SCOPES
from app.tenancy.schemas import ApiKeyCreate
from app.webhooks.partitions import run_maintenance

cli = typer.Typer(
    help="revcov: revenue coverage of NPS feedback. Settings come from REVCOV_* variables.",
    no_args_is_help=True,
    add_completion=False,
)
tenants_cli = typer.Typer(help="Manage tenants.", no_args_is_help=True)
cli.add_typer(tenants_cli, name="tenants")


# PATCH /v1/tenant accepts names of 1-200 characters.
MAX_TENANT_NAME_LENGTH = 200


def _settings() -> Settings:
    """Load the settings and configure logging, or exit with code 2 when a setting is invalid."""
    try:
        settings = get_settings()
    except ValidationError as error:
        for line in _invalid_setting_messages(error):
            typer.echo(f"revcov: {line}", err=True)
        raise typer.Exit(2) from None
    configure_logging(settings.log_level, settings.log_format)
    return settings


def _database_url(settings: Settings) -> str | None:
    return settings.database_url.get_secret_value() if settings.database_url else None


def _invalid_setting_messages(error: ValidationError) -> list[str]:
    """Describe each invalid setting by its variable name, without the value.

    The value is left out because it may contain a secret, such as the password in
    REVCOV_DATABASE_URL.
    """
    prefix = Settings.model_config.get("env_prefix", "")
    messages = []
    for detail in error.errors(include_url=False, include_input=False):
        message = detail["msg"]
        if detail["type"] == "value_error":
            # A validator's own message, without pydantic's "Value error, " prefix.
            message = str(detail.get("ctx", {}).get("error", message))
        if detail["loc"]:
            name = f"{prefix}{detail['loc'][0]}".upper()
            messages.append(f"invalid setting {name}: {message}")
        else:
            messages.append(f"invalid settings: {message}")
    return messages


def _creates_embedded_database(settings: Settings) -> bool:
    """Tell whether opening the database will create a new embedded one under REVCOV_DATA_DIR."""
    return settings.database_url is None and not embedded_database_exists(settings.data_dir)


def _print_new_database_note(data_dir: Path, use: str) -> None:
    """Print on stderr where the new embedded database is, because a `serve` started with
    another REVCOV_DATA_DIR, or from another directory, uses another database."""
    typer.echo(
        f"revcov: note: created a new embedded database under {data_dir.expanduser().resolve()}. "
        f"Run `revcov serve` with the same REVCOV_DATA_DIR (or from the same directory) "
        f"to use {use}.",
        err=True,
    )


class _Stopped(Exception):
    """Raised by the SIGINT/SIGTERM handler once uvicorn has shut down."""


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    raise _Stopped(signal.Signals(signum).name)


@contextmanager
def _stop_cleanly_on_signals() -> Iterator[None]:
    """Let cleanup code run after a SIGINT or SIGTERM.

    uvicorn shuts down on these signals and then re-raises the signal to the handler that was
    installed before it ran. With the default handlers the process would die at once and
    never stop the embedded PostgreSQL; this handler unwinds the stack instead.
    """
    previous = {sig: signal.signal(sig, _raise_stopped) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    except _Stopped:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _require_free_port(host: str, port: int) -> None:
    """Exit with code 2 when another process listens on `host`:`port`, before the database
    starts and migrations run for a server that could not listen."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        # Like uvicorn, allow an address whose last connections are in TIME_WAIT.
        with socket.create_server((host, port), family=family):
            pass
    except OSError as error:
        typer.echo(
            f"revcov serve: cannot listen on {host}:{port} ({error.strerror}). Stop the "
            "process that uses it, or choose another port with --port or REVCOV_PORT.",
            err=True,
        )
        raise typer.Exit(2) from None


@cli.command()
def serve(
    host: Annotated[
        str | None,
        typer.Option(help="Interface to listen on. Default: REVCOV_HOST, else 127.0.0.1."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            min=1, max=65535, help="TCP port to listen on. Default: REVCOV_PORT, else 8000."
        ),
    ] = None,
) -> None:
    """Apply migrations (unless REVCOV_MIGRATE_ON_START=false) and serve the API; without
    REVCOV_DATABASE_URL, on embedded PostgreSQL."""
    settings = _settings()
    host = host or settings.host
    port = settings.port if port is None else port
    _require_free_port(host, port)
    with (
        _stop_cleanly_on_signals(),
        open_database(_database_url(settings), settings.data_dir) as url,
    ):
        if settings.migrate_on_start:
            upgrade_to_head(url)
        app = create_app(settings, database_url=url)
        # A full garbage collection visits every tracked object, about 150,000 after the
        # imports, in 75 ms on a 2-core benchmark machine, and validating a batch of 10,000
        # revenue updates triggered several. These objects live as long as the process, so
        # the collector skips them from now on.
        gc.collect()
        gc.freeze()
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_config=None,
            # `RequestIdMiddleware` logs each request. uvicorn would otherwise still build
            # its access line's arguments per response for a logger that is disabled.
            access_log=False,
            timeout_graceful_shutdown=settings.shutdown_timeout_seconds,
        )


@cli.command()
def migrate() -> None:
    """Apply all pending database migrations, then exit."""
    settings = _settings()
    creates_database = _creates_embedded_database(settings)
    with open_database(_database_url(settings), settings.data_dir) as url:
        upgrade_to_head(url)
    typer.echo("Database migrated to the newest revision.")
    if creates_database:
        _print_new_database_note(settings.data_dir, "this database")


async def _maintain(url: str, settings: Settings) -> dict[str, object]:
    engine = create_engine(url, settings)
    try:
        result = await run_maintenance(create_sessionmaker(engine), settings, datetime.now(UTC))
    finally:
        await engine.dispose()
    return asdict(result)


@cli.command()
def maintain() -> None:
    """Create the coming months' webhook delivery partitions, drop those past
    REVCOV_WEBHOOK_DELIVERY_RETENTION_DAYS and delete expired delivery keys; print JSON.

    `serve` does the same at start and every hour.
    """
    settings = _settings()
    with open_database(_database_url(settings), settings.data_dir) as url:
        if settings.database_url is None:
            upgrade_to_head(url)
        result = asyncio.run(_maintain(url, settings))
    typer.echo(json.dumps(result))


async def _create_tenant(url: str, settings: Settings, name: str) -> dict[str, str]:
    engine = create_engine(url, settings)
    try:
        async with session_scope(create_sessionmaker(engine)) as session:
            tenant, key = await tenant_service.create_tenant(session, name)
    finally:
        await engine.dispose()
    return {"tenant_id": str(tenant.id), "api_key": key}


def _check_tenant_name(name: str) -> str:
    if not name.strip():
        raise typer.BadParameter(
            "the tenant name is empty or only whitespace. Pass a name such as acme."
        )
    if len(name) > MAX_TENANT_NAME_LENGTH:
        raise typer.BadParameter(
            f"the tenant name has {len(name)} characters, "
            f"but at most {MAX_TENANT_NAME_LENGTH} are allowed."
        )
    return name


@tenants_cli.command("create")
def create_tenant(
    name: Annotated[
        str,
        typer.Argument(
            help=f"The tenant's display name, 1-{MAX_TENANT_NAME_LENGTH} characters.",
            callback=_check_tenant_name,
        ),
    ],
) -> None:
    """Create a tenant and print its id and API key as JSON; the key is shown only once.

    Without REVCOV_DATABASE_URL the tenant goes into the embedded database under
    REVCOV_DATA_DIR, which is created when it does not exist yet.
    """
    settings = _settings()
    creates_database = _creates_embedded_database(settings)
    with open_database(_database_url(settings), settings.data_dir) as url:
        if settings.database_url is None:
            upgrade_to_head(url)
        created = asyncio.run(_create_tenant(url, settings, name))
    typer.echo(json.dumps(created))
    if creates_database:
        _print_new_database_note(settings.data_dir, "this tenant")


async def _list_tenants(url: str, settings: Settings) -> list[dict[str, str]]:
    engine = create_engine(url, settings)
    try:
        async with session_scope(create_sessionmaker(engine)) as session:
            tenants = await tenant_service.list_tenants(session)
    finally:
        await engine.dispose()
    return [
        {
            "tenant_id": str(tenant.id),
            "name": tenant.name,
            "created_at": tenant.created_at.isoformat(),
        }
        for tenant in tenants
    ]


@tenants_cli.command("list")
def list_tenants() -> None:
    """Print every tenant as one JSON object per line (id, name, creation time), oldest
    first."""
    settings = _settings()
    creates_database = _creates_embedded_database(settings)
    with open_database(_database_url(settings), settings.data_dir) as url:
        if settings.database_url is None:
            upgrade_to_head(url)
        listed = asyncio.run(_list_tenants(url, settings))
    for tenant in listed:
        typer.echo(json.dumps(tenant))
    if creates_database:
        _print_new_database_note(settings.data_dir, "its tenants")


async def _create_key(
    url: str, settings: Settings, tenant_id: uuid.UUID, request: ApiKeyCreate
) -> dict[str, object] | None:
    engine = create_engine(url, settings)
    try:
        async with session_scope(create_sessionmaker(engine)) as session:
            tenant = await tenant_service.get_tenant(session, tenant_id)
            if tenant is None:
                return None
            api_key, key = await tenant_service.create_api_key(
                session, tenant, request, actor_key_id=None
            )
    finally:
        await engine.dispose()
    return {"key_id": str(api_key.id), "scopes": api_key.scopes, "api_key": key}


@tenants_cli.command("create-key")
def create_key(
    tenant_id: Annotated[uuid.UUID, typer.Argument(help="The tenant's id.")],
    name: Annotated[str, typer.Option(help="What the key is for.")] = "operator",
    scope: Annotated[
        list[str] | None,
        typer.Option(
            help="A scope of the key: ingest, read or admin. Repeat it for several scopes. "
            "Default: all three."
        ),
    ] = None,
) -> None:
    """Create an API key for a tenant and print it as JSON. The key is shown only once.

    Operators use it when no usable key is left, such as after the last admin key was
    lost. The audit log records it with no actor key.
    """
    settings = _settings()
    try:
        request = ApiKeyCreate(name=name, scopes=scope or list(API_KEY_SCOPES))
    except ValidationError as error:
        reasons = "; ".join(detail["msg"] for detail in error.errors(include_url=False))
        raise typer.BadParameter(reasons) from None
    creates_database = _creates_embedded_database(settings)
    with open_database(_database_url(settings), settings.data_dir) as url:
        if settings.database_url is None:
            upgrade_to_head(url)
        created = asyncio.run(_create_key(url, settings, tenant_id, request))
    if creates_database:
        _print_new_database_note(settings.data_dir, "its tenants")
    if created is None:
        typer.echo(
            f"revcov tenants create-key: no tenant {tenant_id} in this database; check the id "
            "(`revcov tenants list`) and REVCOV_DATABASE_URL or REVCOV_DATA_DIR",
            err=True,
        )
        raise typer.Exit(1)
    typer.echo(json.dumps(created))


class _ImportFailedError(Exception):
    """An import that cannot start; the message names what to fix."""


async def _import_revenue(
    url: str,
    settings: Settings,
    tenant_id: uuid.UUID,
    open_lines: Callable[[], Iterator[str]],
    options: revenue_csv.CsvOptions,
) -> RevenueImportResult:
    engine = create_engine(url, settings)
    try:
        async with session_scope(create_sessionmaker(engine)) as session:
            tenant = await tenant_service.get_tenant(session, tenant_id)
            if tenant is None:
                raise _ImportFailedError(
                    f"no tenant {tenant_id} in this database; check the id and "
                    "REVCOV_DATABASE_URL or REVCOV_DATA_DIR"
                )
            return await revenue_csv.import_revenue_csv(session, tenant, open_lines, options)
    finally:
        await engine.dispose()


def _echo_line_errors(result: RevenueImportResult) -> None:
    for error in result.errors:
        typer.echo(f"revcov import-revenue: {error.describe()}", err=True)
    if result.rejected > len(result.errors):
        typer.echo(
            f"revcov import-revenue: ... and {result.rejected - len(result.errors)} more "
            "invalid lines",
            err=True,
        )


@cli.command("import-revenue")
def import_revenue(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            readable=True,
            help="UTF-8 CSV file whose first line is a header.",
        ),
    ],
    tenant: Annotated[str, typer.Option(help="The tenant's id, as `tenants create` prints it.")],
    decimal: Annotated[str, typer.Option(help="Decimal separator of amounts: . or ,")] = ".",
    thousands: Annotated[
        str,
        typer.Option(
            help="Thousands separator of amounts: none, ',', '.', space or an apostrophe."
        ),
    ] = "none",
    delimiter: Annotated[str, typer.Option(help="Field delimiter: ',', ';', '|' or tab.")] = ",",
    currency: Annotated[
        str | None,
        typer.Option(
            help="ISO 4217 currency of lines without one, or of a file without a currency column."
        ),
    ] = None,
    column: Annotated[
        list[str] | None,
        typer.Option(
            help="FIELD=HEADER: read FIELD (account_external_id, account_name, amount, "
            "currency or effective_at) from the column HEADER. Repeat for several fields."
        ),
    ] = None,
    skip_invalid: Annotated[
        bool,
        typer.Option(
            help="Import the valid lines and list the invalid ones, instead of "
            "rejecting the whole file."
        ),
    ] = False,
) -> None:
    """Import revenue updates from a CSV export into a tenant, all or nothing by default.

    Prints a JSON summary on stdout and each invalid line, with its line number, on stderr.
    Exits with 1 when the file is rejected, and nothing is written then.
    """
    settings = _settings()
    try:
        tenant_id = uuid.UUID(tenant)
    except ValueError:
        raise typer.BadParameter(
            f"{tenant!r} is not a tenant id such as 0b7befcb-a761-43ca-9005-f05f9c77db3c.",
            param_hint="--tenant",
        ) from None
    try:
        options = revenue_csv.parse_options(
            decimal=decimal,
            thousands=thousands,
            delimiter=delimiter,
            currency=currency,
            columns=column or (),
            skip_invalid=skip_invalid,
            location=lambda name: f"--{name}",
        )
    except RevenueCsvInvalidError as error:
        typer.echo(f"revcov import-revenue: {error.detail}", err=True)
        raise typer.Exit(2) from None

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )
    # The file is read twice unless invalid lines are skipped: checked, then applied. The
    # bar shows each reading on its own, so its total is the file's size.
    readings = ["Importing"] if skip_invalid else ["Checking", "Importing"]
    size = file.stat().st_size
    task = progress.add_task(f"{readings[0]} {file.name}", total=size)
    opened = 0

    def open_lines() -> Iterator[str]:
        nonlocal opened
        if opened:
            reading = readings[min(opened, len(readings) - 1)]
            progress.reset(task, total=size, description=f"{reading} {file.name}")
        opened += 1
        with file.open("rb") as handle:
            yield from revenue_csv.decode_lines(
                handle, progress=lambda read: progress.advance(task, read)
            )

    try:
        with open_database(_database_url(settings), settings.data_dir) as url, progress:
            try:
                result = asyncio.run(_import_revenue(url, settings, tenant_id, open_lines, options))
            finally:
                # A rejected file is read only once, so the bar ends where reading ended.
                read = next(item.completed for item in progress.tasks if item.id == task)
                progress.update(task, total=read)
    except RevenueCsvRejectedError as error:
        typer.echo(f"revcov import-revenue: {error.detail}", err=True)
        _echo_line_errors(error.result)
        typer.echo(error.result.model_dump_json())
        raise typer.Exit(1) from None
    except (RevenueCsvInvalidError, _ImportFailedError) as error:
        typer.echo(f"revcov import-revenue: {error}", err=True)
        raise typer.Exit(1) from None

    _echo_line_errors(result)
    typer.echo(result.model_dump_json())


@cli.command()
def demo(
    url: Annotated[
        str | None,
        typer.Option(
            help="Base URL of the running service; default http://REVCOV_HOST:REVCOV_PORT."
        ),
    ] = None,
    accounts: Annotated[
        int, typer.Option(min=1, max=10_000, help="Number of accounts to generate.")
    ] = demo_loader.DEFAULT_ACCOUNTS,
    seed: Annotated[
        int | None,
        typer.Option(help="Seed of the random generator, to repeat a run; default: a random seed."),
    ] = None,
) -> None:
    """Create tenant `demo` in a running service and load generated data into it.

    The data are accounts, their revenue history and signed Typeform responses. The command
    prints the tenant's API key and the coverage of the current quarter.
    """
    settings = _settings()
    base_url = demo_loader.service_url(settings, url)
    try:
        demo_loader.check_service(base_url)
        if settings.database_url is None:
            demo_loader.check_embedded_database(settings.data_dir)
        try:
            with open_database(_database_url(settings), settings.data_dir) as database_url:
                created = asyncio.run(_create_tenant(database_url, settings, "demo"))
        except (SQLAlchemyError, OSError) as error:
            raise demo_loader.DemoError(
                f"Creating tenant demo in the database failed: {str(error).splitlines()[0]}. "
                "Check that REVCOV_DATABASE_URL or REVCOV_DATA_DIR is the same as for "
                "`revcov serve`."
            ) from None
        demo_loader.run_demo(
            base_url,
            tenant_id=created["tenant_id"],
            api_key=created["api_key"],
            accounts=accounts,
            seed=seed,
        )
    except demo_loader.DemoError as error:
        typer.echo(f"revcov demo: {error}", err=True)
        raise typer.Exit(1) from None


# SQLSTATE classes of a database that cannot be used at all: connection exceptions (08),
# invalid authorization (28) and an unknown database (3D).
_CONNECTION_SQLSTATE_CLASSES = ("08", "28", "3D")
_CONNECTION_ADVICE = "Check REVCOV_DATABASE_URL and that the server accepts connections."
# SQLSTATEs after connecting that need the operator, with what to do.
_SETUP_ADVICE = {
    # undefined_table
    "42P01": "The database has no revcov schema yet; run `revcov migrate` first.",
    # insufficient_privilege
    "42501": "Grant the database user the rights that docs/getting-started.md lists, such "
    "as CREATE on the schema.",
    # read_only_sql_transaction
    "25006": "The database accepts no writes: the server is a standby, or the user's "
    "transactions are read-only. Point REVCOV_DATABASE_URL at the primary server.",
}
_UNKNOWN_REVISION = re.compile(r"Can't locate revision identified by '([^']*)'")


def _database_failure(error: BaseException) -> str | None:
    """Describe, in one line with what to do, a failure to reach or use the database, from
    the error or any error it was raised from. Return None for any other error."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, asyncpg.PostgresError):
            state = current.sqlstate or ""
            if state[:2] in _CONNECTION_SQLSTATE_CLASSES:
                return f"cannot use the database: {current}. {_CONNECTION_ADVICE}"
            if state in _SETUP_ADVICE:
                return f"cannot use the database: {current}. {_SETUP_ADVICE[state]}"
        elif isinstance(current, (ConnectionError, socket.gaierror, TimeoutError)):
            reason = str(current) or type(current).__name__
            return f"cannot use the database: {reason}. {_CONNECTION_ADVICE}"
        elif isinstance(current, AlembicCommandError):
            found = _UNKNOWN_REVISION.search(str(current))
            if found:
                return (
                    f"the database schema is at revision {found.group(1)!r}, which this "
                    "release does not know: a newer release migrated it. Run that release, "
                    "or serve this one with REVCOV_MIGRATE_ON_START=false."
                )
        current = current.__cause__ or current.__context__
    return None


def _data_dir_failure(error: BaseException) -> str | None:
    """Describe, in one line, a file system error on REVCOV_DATA_DIR or a path inside it,
    such as a data directory that is a file or cannot be created. Return None otherwise."""
    if not isinstance(error, OSError) or not isinstance(error.filename, str):
        return None
    data_dir = get_settings().data_dir.absolute()
    path = Path(error.filename).absolute()
    if path != data_dir and data_dir not in path.parents:
        return None
    if isinstance(error, (FileExistsError, NotADirectoryError)):
        reason = f"{path} is a file, not a directory"
    else:
        reason = f"{error.strerror} ({path})"
    return (
        f"cannot use REVCOV_DATA_DIR {str(data_dir)!r}: {reason}. Set it to a directory "
        "that this user can create and write, or set REVCOV_DATABASE_URL."
    )


def main() -> None:
    try:
        cli()
    except (SQLAlchemyError, asyncpg.PostgresError, OSError, AlembicCommandError) as error:
        line = _database_failure(error) or _data_dir_failure(error)
        if line is None:
            raise
        # One line instead of a traceback of several hundred. The reasons name a host, a
        # user, a database or a revision, and the URL with its password is not printed.
        typer.echo(f"revcov: {line}", err=True)
        raise SystemExit(1) from None
