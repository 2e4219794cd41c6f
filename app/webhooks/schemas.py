from datetime import datetime
from typing import Literal

from pydantic import Field

from app.schemas import ReadModel, WriteModel


class WebhookEndpointCreate(WriteModel):
    source: str = Field(description="The survey platform, such as typeform.", examples=["typeform"])
    secret: str | None = Field(
        default=None,
        min_length=16,
        max_length=256,
        description="Signing secret to set on the platform too; generated when omitted.",
    )
    account_field: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The hidden field that holds the account id; default account_id.",
    )
    score_field: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The NPS question's ref; default: the first NPS or opinion-scale answer.",
    )
    comment_field: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The comment question's ref; default: the first text answer.",
    )


class WebhookEndpointRead(ReadModel):
    id: str
    source: str
    url: str = Field(description="Paste this URL into the platform's webhook settings.")
    account_field: str
    score_field: str | None
    comment_field: str | None
    created_at: datetime


class WebhookEndpointCreated(WebhookEndpointRead):
    secret: str = Field(description="Shown only once; paste it into the platform's settings.")


class WebhookAck(ReadModel):
    """The answer to a delivery: 2xx means it is stored (or was stored before)."""

    status: Literal["processed", "failed", "ignored", "duplicate"]
    delivery_id: int | None = Field(description="Null for a duplicate of a stored delivery.")
    detail: str | None = None
