"""Import every domain's models so that the mapper registry and Alembic see all tables."""

from app.accounts.models import Account, RevenueRecord
from app.db.base import Base
from app.responses.models import SurveyResponse
from app.tenancy.models import ApiKey, Tenant
from app.webhooks.models import WebhookDelivery, WebhookEndpoint

__all__ = [
    "Account",
    "ApiKey",
    "Base",
    "RevenueRecord",
    "SurveyResponse",
    "Tenant",
    "WebhookDelivery",
    "WebhookEndpoint",
]
