"""The ingest baseline: a minimal FastAPI app that does the least a correct receiver must.

It verifies the Typeform HMAC over the raw body, validates the body with a pydantic model
and inserts one row per delivery with asyncpg, committed with synchronous_commit on,
before it answers 200. Run as `python -m bench.baseline_app --port PORT` with
REVCOV_BENCH_BASELINE_DSN and REVCOV_BENCH_BASELINE_SECRET set.
"""

import argparse
import base64
import hashlib
import hmac
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg
import uvicorn
from fastapi import FastAPI, Request, Response
from pydantic import BaseModel, ValidationError

TABLE_DDL = """
CREATE TABLE IF NOT EXISTS bench_baseline_deliveries (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id text NOT NULL UNIQUE,
    token text NOT NULL,
    account_ref text,
    score smallint,
    submitted_at timestamptz NOT NULL,
    body bytea NOT NULL
)
"""
INSERT = """
INSERT INTO bench_baseline_deliveries (event_id, token, account_ref, score, submitted_at, body)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (event_id) DO NOTHING
"""


class Field(BaseModel):
    type: str | None = None
    ref: str | None = None


class Answer(BaseModel):
    type: str
    number: int | None = None
    text: str | None = None
    email: str | None = None
    field: Field


class FormResponse(BaseModel):
    token: str
    submitted_at: datetime
    hidden: dict[str, str] = {}
    answers: list[Answer] = []


class Delivery(BaseModel):
    event_id: str
    event_type: str
    form_response: FormResponse


def create_app(dsn: str, secret: str) -> FastAPI:
    key = secret.encode()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await asyncpg.create_pool(dsn, min_size=10, max_size=10)
        async with app.state.pool.acquire() as connection:
            await connection.execute(TABLE_DDL)
        yield
        await app.state.pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/webhook")
    async def receive(request: Request) -> Any:
        body = await request.body()
        digest = base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode()
        signature = request.headers.get("typeform-signature", "")
        if not hmac.compare_digest(signature, "sha256=" + digest):
            return Response(status_code=401)
        try:
            delivery = Delivery.model_validate_json(body)
        except ValidationError:
            return Response(status_code=422)
        form = delivery.form_response
        score = next(
            (answer.number for answer in form.answers if answer.field.type == "opinion_scale"),
            None,
        )
        await app.state.pool.execute(
            INSERT,
            delivery.event_id,
            form.token,
            form.hidden.get("account_id"),
            score,
            form.submitted_at,
            body,
        )
        return {"status": "processed"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    arguments = parser.parse_args()
    app = create_app(
        os.environ["REVCOV_BENCH_BASELINE_DSN"], os.environ["REVCOV_BENCH_BASELINE_SECRET"]
    )
    uvicorn.run(app, host="127.0.0.1", port=arguments.port, log_level="warning")


if __name__ == "__main__":
    main()
