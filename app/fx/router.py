from fastapi import APIRouter

from app.db.session import SessionDep
from app.fx import service as fx_service
from app.fx.schemas import FxRateBatch, FxRateRead, FxRateUpdateResult
from app.routing import ServiceRoute
from app.schemas import Cursor, Limit, Page
from app.tenancy.dependencies import IngestTenant, ReadTenant

router = APIRouter(tags=["fx-rates"], route_class=ServiceRoute)


@router.put(
    "/v1/fx-rates",
    summary="Store up to 10,000 exchange rates into the reporting currency in one transaction",
)
async def put_fx_rates(
    session: SessionDep, tenant: IngestTenant, batch: FxRateBatch
) -> FxRateUpdateResult:
    return await fx_service.put_rates(session, tenant, batch)


@router.get("/v1/fx-rates", summary="List exchange rates")
async def list_fx_rates(
    session: SessionDep, tenant: ReadTenant, limit: Limit = 100, cursor: Cursor = None
) -> Page[FxRateRead]:
    return await fx_service.list_rates(session, tenant, limit=limit, cursor=cursor)
