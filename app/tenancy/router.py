from fastapi import APIRouter

from app.db.session import SessionDep
from app.routing import ServiceRoute
from app.tenancy import service as tenant_service
from app.tenancy.dependencies import CurrentTenant
from app.tenancy.schemas import TenantRead, TenantUpdate

router = APIRouter(prefix="/v1/tenant", tags=["tenant"], route_class=ServiceRoute)


@router.get("", summary="Get the tenant's settings")
async def get_tenant(tenant: CurrentTenant) -> TenantRead:
    return TenantRead.model_validate(tenant)


@router.patch("", summary="Change the tenant's settings")
async def patch_tenant(
    session: SessionDep, tenant: CurrentTenant, changes: TenantUpdate
) -> TenantRead:
    updated = await tenant_service.update_settings(session, tenant, changes)
    return TenantRead.model_validate(updated)
