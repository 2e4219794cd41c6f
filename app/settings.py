"""Service settings, read from `REVCOV_*` environment variables."""

import ipaddress
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

MIN_STATISTICS_CHECK_INTERVAL_SECONDS = 0.1


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REVCOV_", extra="ignore")

    environment: Literal["development", "production", "test"] = "development"
    database_url: SecretStr | None = Field(
        default=None,
        description="URL of an external PostgreSQL server; unset, an embedded one is started.",
    )
    read_database_url: SecretStr | None = Field(
        default=None,
        description="URL of a streaming replica of REVCOV_DATABASE_URL for the report routes; "
        "unset, reports read from the primary.",
    )
    data_dir: Path = Field(
        default=Path(".revcov"),
        description="Directory for the embedded PostgreSQL data files.",
    )
    bootstrap_api_key: SecretStr | None = Field(
        default=None,
        description="API key of tenant `default`, created at start when no tenant exists.",
    )
    public_url: str | None = Field(
        default=None,
        description="Base URL that survey platforms reach the service at, for webhook URLs.",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="Bearer token that GET /metrics requires; unset, /metrics needs none.",
    )
    migrate_on_start: bool = Field(
        default=True,
        description="Apply pending migrations when `serve` starts. Set it to false where "
        "`revcov migrate` runs as a separate pre-deploy step, as the container image does.",
    )
    shutdown_timeout_seconds: int = Field(
        default=25,
        ge=1,
        le=3600,
        description="Seconds that `serve` waits on SIGTERM or Ctrl-C for requests in flight "
        "to finish before it cancels them and stops.",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    database_pooler: Literal["none", "pgbouncer"] = Field(
        default="none",
        description="The connection pooler between the service and PostgreSQL. `pgbouncer` "
        "(transaction pooling) turns off prepared statement caches, names each prepared "
        "statement uniquely and sets the statement timeout per transaction.",
    )
    # SQLAlchemy closes an overflow connection as soon as it is returned, so under steady
    # load above the pool size every request would open and close a PostgreSQL backend.
    # The whole default capacity is therefore in the pool, and none in the overflow.
    db_pool_size: int = Field(default=20, ge=1, le=200)
    db_max_overflow: int = Field(default=0, ge=0, le=200)
    db_statement_timeout_ms: int = Field(default=30_000, ge=0)
    report_work_mem_kb: int = Field(
        default=65_536,
        ge=64,
        le=2_097_151,
        description="PostgreSQL `work_mem` in kB for each report's transaction (`SET LOCAL`), so "
        "that its sorts and hash tables stay in memory. One report may use several times it.",
    )
    statistics_check_interval_seconds: float = Field(
        default=2.0,
        ge=0,
        le=3600,
        allow_inf_nan=False,
        description="Seconds between checks for tables that changed by much since PostgreSQL "
        "last analyzed them, at least 0.1; 0 leaves that to autovacuum alone.",
    )
    db_connect_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="Seconds a new database connection may take before the request gets 503.",
    )
    webhook_max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    rate_limit_per_second: float = Field(
        default=100.0,
        ge=0,
        description="Requests per second each API key may send on average; 0 turns the limit off.",
    )
    rate_limit_burst: int = Field(
        default=1000,
        ge=1,
        description="Requests an API key may send at once before the per-second rate applies.",
    )
    webhook_rate_limit_per_second: float = Field(
        default=200.0,
        ge=0,
        description="Deliveries per second each webhook endpoint may receive on average; "
        "0 turns the limit off.",
    )
    webhook_rate_limit_burst: int = Field(
        default=5000,
        ge=1,
        description="Deliveries an endpoint may receive at once before the rate applies.",
    )
    webhook_fetch_interval_seconds: float = Field(
        default=2.0,
        gt=0,
        description="Seconds between passes of the background fetcher, which fetches the "
        "responses of thin webhook payloads (Qualtrics, SurveyMonkey) from the platform's API.",
    )
    webhook_fetch_max_attempts: int = Field(
        default=10,
        ge=1,
        description="Fetch attempts per delivery before it is marked failed. Retries back off "
        "exponentially from 30 seconds to at most 1 hour.",
    )
    webhook_fetch_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="Total seconds one API fetch may take, retried later when exceeded.",
    )
    webhook_fetch_allow_private_hosts: bool = Field(
        default=False,
        description="Allow thin-payload endpoints whose api_base_url is localhost or a "
        "private, loopback or link-local IP address, and fetches from host names that "
        "resolve to one (for tests and internal mock APIs).",
    )
    webhook_fetch_batch_size: int = Field(
        default=20,
        ge=1,
        le=1000,
        description="Pending deliveries claimed and fetched concurrently in one transaction.",
    )

    webhook_delivery_retention_days: int = Field(
        default=90,
        ge=7,
        le=36500,
        description="Days raw webhook deliveries are kept: a monthly partition is dropped "
        "once its whole month is older. Delivery keys, which drop repeated deliveries, are "
        "kept 7 days longer.",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def lower_case_log_level(cls, value: object) -> object:
        """Accept the level in any case, such as DEBUG as well as debug."""
        return value.lower() if isinstance(value, str) else value

    @field_validator("database_url", "read_database_url", mode="after")
    @classmethod
    def normalise_driver(cls, value: SecretStr | None) -> SecretStr | None:
        """Accept `postgres://`, `postgresql://` and psycopg URLs and use the asyncpg driver."""
        if value is None:
            return None
        url = value.get_secret_value().strip()
        if not url:
            return None
        prefixes = (
            "postgres://",
            "postgresql://",
            "postgresql+psycopg://",
            "postgresql+psycopg2://",
        )
        for prefix in prefixes:
            if url.startswith(prefix):
                url = "postgresql+asyncpg://" + url[len(prefix) :]
                break
        if not url.startswith("postgresql+asyncpg://"):
            raise ValueError(
                "REVCOV_DATABASE_URL must be a PostgreSQL URL such as "
                "postgresql://user:password@host:5432/revcov"
            )
        try:
            parsed = make_url(url)
            port_ok = parsed.port is None or 0 < parsed.port < 65536
        except ValueError:
            port_ok = False
        if not port_ok:
            # The URL is not repeated, because it may hold a password.
            raise ValueError(
                "REVCOV_DATABASE_URL has an invalid host or port; give a port from 1 to 65535"
            )
        _check_database_query(dict(parsed.query))
        if "sslmode" in parsed.query:
            # libpq's `sslmode`, as hosted PostgreSQL services write it, is asyncpg's `ssl`.
            query = {name: value for name, value in parsed.query.items() if name != "sslmode"}
            query["ssl"] = parsed.query["sslmode"]
            url = parsed.set(query=query).render_as_string(hide_password=False)
        return SecretStr(url)

    @field_validator("statistics_check_interval_seconds", mode="after")
    @classmethod
    def check_statistics_interval(cls, value: float) -> float:
        # Shorter intervals would run the check in a busy loop.
        if 0 < value < MIN_STATISTICS_CHECK_INTERVAL_SECONDS:
            raise ValueError(
                f"must be 0 (off) or at least {MIN_STATISTICS_CHECK_INTERVAL_SECONDS} seconds"
            )
        return value

    @field_validator("metrics_token", mode="after")
    @classmethod
    def check_token(cls, value: SecretStr | None) -> SecretStr | None:
        """Reject a token that is set but blank, which a bare `Authorization: Bearer` would
        match, and drop surrounding whitespace, such as a secret file's final newline,
        which no header carries."""
        if value is None:
            return None
        token = value.get_secret_value().strip()
        if not token:
            raise ValueError(
                "REVCOV_METRICS_TOKEN is set but empty; set a long random token, or unset "
                "the variable to leave /metrics without a token"
            )
        if not _printable_ascii(token):
            # The message leaves the token out: it is a secret.
            raise ValueError(
                "REVCOV_METRICS_TOKEN must contain only printable ASCII characters without "
                "spaces, which every scraper can send in a header, such as the output of "
                "`openssl rand -hex 32`"
            )
        return SecretStr(token)

    @field_validator("public_url", mode="after")
    @classmethod
    def check_public_url(cls, value: str | None) -> str | None:
        """Accept an http or https URL with a valid host name or IP address, an optional
        port and a path of RFC 3986 characters, and without credentials, query, fragment,
        whitespace or characters outside printable ASCII. The message repeats the value
        only when it contains no credentials."""
        if value is None or not value.strip():
            return None
        text = value.strip()
        if not _is_public_url(text):
            quoted_value = "" if "@" in text else f", got {text!r}"
            raise ValueError(
                "REVCOV_PUBLIC_URL must be an http or https URL such as "
                "https://revcov.example.com: a valid host name (an international one in "
                "its xn-- form) or IP address, an optional port, a path of URL characters, "
                f"and no user name, password, query, fragment or spaces{quoted_value}"
            )
        return text

    @model_validator(mode="after")
    def reject_embedded_in_production(self) -> "Settings":
        if self.environment == "production" and self.database_url is None:
            raise ValueError(
                "REVCOV_DATABASE_URL is required when REVCOV_ENVIRONMENT=production; "
                "the embedded PostgreSQL server is for local runs and tests only"
            )
        return self


# A path of RFC 3986 characters: unreserved, sub-delimiters, ":", "@", "/" and
# percent-encoded octets.
_URL_PATH = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*")
# One label of a DNS host name (RFC 1123).
_HOST_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def _is_host(host: str) -> bool:
    """Tell whether `host` (lowercase, without brackets) is an IP address or a DNS name.

    A name whose last label is all digits must be an IPv4 address, because URL parsers
    that follow the WHATWG URL Standard ("ends in a number") read it as one.
    """
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    labels = host.split(".")
    return (
        len(host) <= 253
        and not labels[-1].isdigit()
        and all(_HOST_LABEL.fullmatch(label) for label in labels)
    )


def _is_public_url(text: str) -> bool:
    if not _printable_ascii(text) or any(mark in text for mark in "?#\\"):
        return False
    try:
        parts = urlsplit(text)
        port = parts.port
        host = parts.hostname
    except ValueError:
        # An invalid port, or a bracket without its pair.
        return False
    return (
        parts.scheme in ("http", "https")
        and host is not None
        and (port is None or port > 0)
        and "@" not in parts.netloc
        and _is_host(host)
        # An IPv6 address needs its brackets, and only an IPv6 address has them.
        and (":" in host) == ("[" in parts.netloc)
        and _URL_PATH.fullmatch(parts.path) is not None
    )


# Query parameters of a database URL that reach asyncpg's `connect` as text it accepts,
# and SQLAlchemy's statement cache size. `sslmode` is read as `ssl`.
_DATABASE_URL_PARAMETERS = frozenset(
    {
        "host",
        "port",
        "ssl",
        "sslmode",
        "passfile",
        "service",
        "servicefile",
        "target_session_attrs",
        "krbsrvname",
        "gsslib",
        "prepared_statement_cache_size",
    }
)
# The `ssl` modes asyncpg accepts, as libpq names them.
_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def _check_database_query(query: dict[str, str | tuple[str, ...]]) -> None:
    """Reject query parameters that asyncpg would fail on at the first connection."""
    unknown = sorted(set(query) - _DATABASE_URL_PARAMETERS)
    if unknown:
        raise ValueError(
            f"REVCOV_DATABASE_URL has unknown query parameters ({', '.join(unknown)}); "
            f"accepted: {', '.join(sorted(_DATABASE_URL_PARAMETERS))}"
        )
    repeated = sorted(name for name, value in query.items() if isinstance(value, tuple))
    if repeated:
        raise ValueError(
            f"REVCOV_DATABASE_URL gives query parameters more than once ({', '.join(repeated)})"
        )
    for name in ("ssl", "sslmode"):
        mode = query.get(name)
        if mode is not None and mode not in _SSL_MODES:
            raise ValueError(
                f"REVCOV_DATABASE_URL has an invalid {name} {mode!r}; "
                f"expected one of {', '.join(_SSL_MODES)}"
            )


def _printable_ascii(text: str) -> bool:
    """Tell whether `text` contains only visible ASCII characters, from `!` to `~`."""
    return all("!" <= character <= "~" for character in text)


@lru_cache
def get_settings() -> Settings:
    return Settings()
