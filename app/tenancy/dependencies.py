from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.db.session import SessionDep
from app.tenancy import service as tenant_service
from app.tenancy.errors import InvalidApiKeyError
from app.tenancy.models import Tenant

_bearer = HTTPBearer(auto_error=False, description="An API key from `revcov tenants create`.")


async def get_current_tenant(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Tenant:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise InvalidApiKeyError(
            "Missing API key; send it as `Authorization: Bearer <key>`.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return await tenant_service.authenticate(session, credentials.credentials)


CurrentTenant = Annotated[Tenant, Depends(get_current_tenant)]
