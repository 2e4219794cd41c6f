"""Import every domain's models so that the mapper registry and Alembic see all tables."""

from app.accounts.models import Account, AccountDomain, RevenueRecord
from app.contacts.models import Contact
from app.db.base import Base
from app.fx.models import FxRate
from app.idempotency.models import IdempotencyKey
from app.privacy.models import AuditEvent
from app.reports.models import AccountQuarterScore, RespondentQuarterScore
from app.responses.models import SurveyResponse
from app.tenancy.models import ApiKey, ShareToken, Tenant
from app.webhooks.models import WebhookDelivery, WebhookEndpoint

__all__ = [
    "Account",
    "AccountQuarterScore",
    "AccountDomain",
    "ApiKey",
    "AuditEvent",
    "Base",
    "Contact",
    "FxRate",
    "IdempotencyKey",
    "RespondentQuarterScore",
    "RevenueRecord",
    "ShareToken",
    "SurveyResponse",
    "Tenant",
    "WebhookDelivery",
    "WebhookEndpoint",
]
