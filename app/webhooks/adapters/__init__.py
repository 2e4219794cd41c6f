"""The registry of survey platform adapters, by the source name used on webhook endpoints."""

from app.webhooks.adapters.base import Adapter
from app.webhooks.adapters.delighted import DelightedAdapter
from app.webhooks.adapters.formbricks import FormbricksAdapter
from app.webhooks.adapters.jotform import JotformAdapter
from app.webhooks.adapters.qualtrics import QualtricsAdapter
from app.webhooks.adapters.satismeter import SatisMeterAdapter
from app.webhooks.adapters.standard_webhooks import StandardWebhooksAdapter
from app.webhooks.adapters.surveymonkey import SurveyMonkeyAdapter
from app.webhooks.adapters.survicate import SurvicateAdapter
from app.webhooks.adapters.tally import TallyAdapter
from app.webhooks.adapters.typeform import TypeformAdapter
from app.webhooks.adapters.wootric import WootricAdapter

ADAPTERS: dict[str, Adapter] = {
    adapter.source: adapter
    for adapter in (
        TypeformAdapter(),
        DelightedAdapter(),
        StandardWebhooksAdapter(),
        FormbricksAdapter(),
        WootricAdapter(),
        JotformAdapter(),
        TallyAdapter(),
        SurvicateAdapter(),
        QualtricsAdapter(),
        SurveyMonkeyAdapter(),
        SatisMeterAdapter(),
    )
}


def get_adapter(source: str) -> Adapter | None:
    return ADAPTERS.get(source)
