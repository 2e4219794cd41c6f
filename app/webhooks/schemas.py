from datetime import datetime
from typing import Literal

from pydantic import Field, HttpUrl, field_validator, model_validator

from app.schemas import ReadModel, WriteModel
from app.tenancy.schemas import validate_timezone

DeliveryStatus = Literal["received", "processed", "failed", "ignored", "pending"]

Secret = str
SECRET_RULES = "16 to 256 characters"


class _EndpointSettings(WriteModel):
    account_field: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The hidden field, property, trait or custom variable holding the account "
        "id; default: the platform's usual name (account_id for most).",
    )
    score_field: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The NPS question's ref, key, label or id; default: the platform's NPS "
        "question (the first NPS or opinion-scale answer on Typeform).",
    )
    comment_field: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The comment question's ref, key, label or id; default: the first text answer.",
    )
    timezone: str | None = Field(
        default=None,
        description="IANA zone for timestamps sent without one (Qualtrics); default UTC.",
    )
    token: str | None = Field(
        default=None,
        repr=False,
        min_length=16,
        max_length=256,
        description="For platforms that sign nothing: a shared token the sender must add as "
        "`?token=` to the URL or as an `X-Revcov-Token` header.",
    )
    api_base_url: HttpUrl | None = Field(
        default=None, description="API base URL for platforms whose webhooks carry only ids."
    )
    api_token: str | None = Field(
        default=None,
        repr=False,
        min_length=1,
        max_length=2000,
        pattern=r"^[!-~]+$",
        description="API token for fetching responses of thin payloads (never shown again): "
        "printable ASCII without spaces, as it is sent in an HTTP header.",
    )

    @field_validator("timezone")
    @classmethod
    def check_timezone(cls, value: str | None) -> str | None:
        return None if value is None else validate_timezone(value)


class WebhookEndpointCreate(_EndpointSettings):
    source: str = Field(description="The survey platform, such as typeform.", examples=["typeform"])
    secret: str | None = Field(
        default=None,
        repr=False,
        min_length=16,
        max_length=256,
        description="Signing secret, as set on the platform; generated when omitted. For "
        "SurveyMonkey: `client_id&client_secret`; for Standard Webhooks: a `whsec_` secret.",
    )
    secrets: list[str] | None = Field(
        default=None,
        repr=False,
        min_length=1,
        max_length=2,
        description="Up to two signing secrets accepted at once, while one is rotated.",
    )

    @model_validator(mode="after")
    def check_secrets(self) -> "WebhookEndpointCreate":
        if self.secret is not None and self.secrets is not None:
            raise ValueError("pass either `secret` or `secrets`, not both")
        for value in self.secrets or []:
            if not 16 <= len(value) <= 256:
                raise ValueError(f"each secret must have {SECRET_RULES}")
        return self


class WebhookEndpointUpdate(_EndpointSettings):
    """Settings to change; absent fields keep their value, null clears an optional one."""

    secrets: list[str] | None = Field(
        default=None,
        repr=False,
        min_length=1,
        max_length=2,
        description="Replace the accepted signing secrets (two during a rotation).",
    )

    @field_validator("secrets")
    @classmethod
    def check_secrets(cls, value: list[str] | None) -> list[str] | None:
        for secret in value or []:
            if not 16 <= len(secret) <= 256:
                raise ValueError(f"each secret must have {SECRET_RULES}")
        return value


class WebhookEndpointRead(ReadModel):
    id: str
    source: str
    url: str = Field(description="Paste this URL into the platform's webhook settings.")
    account_field: str
    score_field: str | None
    comment_field: str | None
    timezone: str
    api_base_url: str | None
    secret_count: int = Field(description="How many signing secrets are accepted.")
    has_token: bool
    has_api_token: bool
    created_at: datetime


class WebhookEndpointCreated(WebhookEndpointRead):
    secret: str = Field(
        repr=False, description="Shown only once; paste it into the platform's settings."
    )


class WebhookAck(ReadModel):
    """The answer to a delivery: 2xx means it is stored (or was stored before)."""

    status: Literal["processed", "failed", "ignored", "pending", "duplicate"]
    delivery_id: int | None = Field(description="Null for a duplicate of a stored delivery.")
    detail: str | None = None


class WebhookDeliveryRead(ReadModel):
    id: int
    endpoint_id: str
    source: str
    delivery_key: str = Field(description="The platform's delivery id, used to drop repeats.")
    event_type: str | None = Field(
        description="The platform's event name, such as `form_response`. Failed deliveries "
        "keep it where the platform names it at the top of the JSON body."
    )
    status: DeliveryStatus
    error: str | None = Field(description="Why mapping or fetching failed.")
    response_id: str | None
    attempts: int = Field(description="API fetch attempts, for thin payloads.")
    next_attempt_at: datetime | None
    received_at: datetime
