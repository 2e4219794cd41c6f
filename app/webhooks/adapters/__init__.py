"""The registry of survey platform adapters, by the source name used on webhook endpoints."""

from app.webhooks.adapters.base import Adapter
from app.webhooks.adapters.typeform import TypeformAdapter

ADAPTERS: dict[str, Adapter] = {adapter.source: adapter for adapter in (TypeformAdapter(),)}


def get_adapter(source: str) -> Adapter | None:
    return ADAPTERS.get(source)
