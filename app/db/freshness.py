"""The freshness of the data behind a report, when reports read from a streaming replica.

A report reads from the session of `get_report_session`, which first measures the
moment up to which its server has the primary's data. The middleware here sends that
moment as the `Data-As-Of` header and the lag behind the primary as `Replica-Lag-Seconds`.
"""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# On the primary the data is current. A standby whose WAL receiver is streaming and has
# replayed all WAL it received is current too. Otherwise the data is as of the commit
# time of the last replayed transaction, which is null until the standby replays one.
# NOTE: WAL the primary wrote but has not sent yet is not counted, so a streaming
# standby can be up to one network round trip behind the moment reported here.
FRESHNESS_QUERY = text(
    """
    SELECT now() AS checked_at,
           CASE
               WHEN NOT pg_is_in_recovery() THEN now()
               WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn()
                    AND EXISTS (SELECT FROM pg_stat_wal_receiver WHERE status = 'streaming')
                   THEN now()
               ELSE pg_last_xact_replay_timestamp()
           END AS data_as_of
    """
)

FRESHNESS_STATE_KEY = "data_freshness"


@dataclass(frozen=True)
class DataFreshness:
    """The moment a report's data is complete up to; None when the standby cannot tell."""

    checked_at: datetime
    data_as_of: datetime | None

    @property
    def lag_seconds(self) -> float | None:
        if self.data_as_of is None:
            return None
        return max((self.checked_at - self.data_as_of).total_seconds(), 0.0)


async def measure_freshness(session: AsyncSession) -> DataFreshness:
    row = (await session.execute(FRESHNESS_QUERY)).one()
    return DataFreshness(checked_at=row.checked_at, data_as_of=row.data_as_of)


class FreshnessHeaderMiddleware:
    """Add `Data-As-Of` and `Replica-Lag-Seconds` to responses whose request measured the
    freshness of its data (the report routes)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            freshness = scope.get("state", {}).get(FRESHNESS_STATE_KEY)
            if message["type"] == "http.response.start" and freshness is not None:
                headers = list(message.get("headers", []))
                lag = freshness.lag_seconds
                if freshness.data_as_of is not None and lag is not None:
                    moment = freshness.data_as_of.isoformat().replace("+00:00", "Z")
                    headers.append((b"data-as-of", moment.encode()))
                    headers.append((b"replica-lag-seconds", f"{lag:.3f}".encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
