"""Authentication of API keys, and the scope each route requires.

A route declares its scope through its tenant parameter: `tenant: ReadTenant`,
`IngestTenant` or `AdminTenant`, or a router-wide `dependencies=[Depends(RequireScope(...))]`.
tests/test_scopes.py fails for any route that authenticates without one of these.
"""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.db.session import SessionDep
from app.tenancy import service as tenant_service
from app.tenancy.errors import InvalidApiKeyError, MissingScopeError
from app.tenancy.models import ApiKey, Tenant
from app.tenancy.schemas import ApiKeyScope

_bearer = HTTPBearer(
    auto_error=False,
    description="An API key from `revcov tenants create` or `POST /v1/api-keys`.",
)


@dataclass(frozen=True)
class Caller:
    """The tenant of a request and the API key it was sent with."""

    tenant: Tenant
    api_key: ApiKey


async def get_caller(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise InvalidApiKeyError(
            "Missing API key; send it as `Authorization: Bearer <key>`.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    api_key, tenant = await tenant_service.authenticate(session, credentials.credentials)
    return Caller(tenant=tenant, api_key=api_key)


CurrentCaller = Annotated[Caller, Depends(get_caller)]


async def get_current_tenant(caller: CurrentCaller) -> Tenant:
    """Return the caller's tenant without checking a scope; a route using it alone fails
    the scope test, so pair it with a router-wide `RequireScope`."""
    return caller.tenant


CurrentTenant = Annotated[Tenant, Depends(get_current_tenant)]


class RequireScope:
    """A dependency that returns the caller's tenant, or raises 403 when the API key
    lacks `scope`."""

    def __init__(self, scope: ApiKeyScope) -> None:
        self.scope = scope

    async def __call__(self, caller: CurrentCaller) -> Tenant:
        if self.scope not in caller.api_key.scopes:
            granted = ", ".join(caller.api_key.scopes)
            raise MissingScopeError(
                f"This route needs an API key with the {self.scope!r} scope, but key "
                f"{caller.api_key.id} has only {granted}; use a key with that scope or "
                "create one through POST /v1/api-keys."
            )
        return caller.tenant

    def __repr__(self) -> str:
        return f"RequireScope({self.scope!r})"


ReadTenant = Annotated[Tenant, Depends(RequireScope("read"))]
IngestTenant = Annotated[Tenant, Depends(RequireScope("ingest"))]
AdminTenant = Annotated[Tenant, Depends(RequireScope("admin"))]
