import uuid

from fastapi import APIRouter, status

from app.db.session import SessionDep
from app.errors import problem_content
from app.routing import ServiceRoute
from app.tenancy import service as tenant_service
from app.tenancy.dependencies import AdminTenant, CurrentCaller, ReadTenant
from app.tenancy.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyRead,
    ShareTokenCreate,
    ShareTokenCreated,
    ShareTokenRead,
    TenantRead,
    TenantUpdate,
)

router = APIRouter(prefix="/v1/tenant", tags=["tenant"], route_class=ServiceRoute)


@router.get("", summary="Get the tenant's settings")
async def get_tenant(tenant: ReadTenant) -> TenantRead:
    return TenantRead.model_validate(tenant)


@router.patch("", summary="Change the tenant's settings")
async def patch_tenant(
    session: SessionDep, tenant: AdminTenant, caller: CurrentCaller, changes: TenantUpdate
) -> TenantRead:
    updated = await tenant_service.update_settings(
        session, tenant, changes, actor_key_id=caller.api_key.id
    )
    return TenantRead.model_validate(updated)


api_keys_router = APIRouter(prefix="/v1/api-keys", tags=["api-keys"], route_class=ServiceRoute)


@api_keys_router.get("", summary="List the tenant's API keys, revoked ones included")
async def list_api_keys(session: SessionDep, tenant: AdminTenant) -> list[ApiKeyRead]:
    api_keys = await tenant_service.list_api_keys(session, tenant)
    return [ApiKeyRead.model_validate(api_key) for api_key in api_keys]


@api_keys_router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create an API key with the given scopes; the key is shown only in this response",
)
async def create_api_key(
    session: SessionDep, tenant: AdminTenant, caller: CurrentCaller, body: ApiKeyCreate
) -> ApiKeyCreated:
    api_key, key = await tenant_service.create_api_key(
        session, tenant, body, actor_key_id=caller.api_key.id
    )
    return ApiKeyCreated.model_validate(
        {**ApiKeyRead.model_validate(api_key).model_dump(), "api_key": key}
    )


@api_keys_router.delete(
    "/{key_id}",
    summary="Revoke an API key; requests with it fail with 401 from now on",
    responses={409: problem_content("The key is the tenant's last active admin key.")},
)
async def revoke_api_key(
    session: SessionDep, tenant: AdminTenant, caller: CurrentCaller, key_id: uuid.UUID
) -> ApiKeyRead:
    revoked = await tenant_service.revoke_api_key(
        session, tenant, key_id, actor_key_id=caller.api_key.id
    )
    return ApiKeyRead.model_validate(revoked)


share_tokens_router = APIRouter(
    prefix="/v1/share-tokens", tags=["share-tokens"], route_class=ServiceRoute
)


@share_tokens_router.get("", summary="List the tenant's share tokens, revoked ones included")
async def list_share_tokens(session: SessionDep, tenant: AdminTenant) -> list[ShareTokenRead]:
    share_tokens = await tenant_service.list_share_tokens(session, tenant)
    return [ShareTokenRead.model_validate(share_token) for share_token in share_tokens]


@share_tokens_router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create a share token for the coverage widget; the token is shown only here",
    description=(
        "A share token opens `GET /v1/widgets/coverage.svg?token=<token>` of this tenant "
        "and no other route, so a wall display can show the widget without an API key."
    ),
)
async def create_share_token(
    session: SessionDep, tenant: AdminTenant, caller: CurrentCaller, body: ShareTokenCreate
) -> ShareTokenCreated:
    share_token, token = await tenant_service.create_share_token(
        session, tenant, body, actor_key_id=caller.api_key.id
    )
    return ShareTokenCreated.model_validate(
        {**ShareTokenRead.model_validate(share_token).model_dump(), "share_token": token}
    )


@share_tokens_router.delete(
    "/{token_id}",
    summary="Revoke a share token; the widget rejects it with 401 from now on",
)
async def revoke_share_token(
    session: SessionDep, tenant: AdminTenant, caller: CurrentCaller, token_id: uuid.UUID
) -> ShareTokenRead:
    revoked = await tenant_service.revoke_share_token(
        session, tenant, token_id, actor_key_id=caller.api_key.id
    )
    return ShareTokenRead.model_validate(revoked)
