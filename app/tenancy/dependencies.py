"""Authentication of API keys, and the scope each route requires.

A route declares its scope through its tenant parameter: `tenant: ReadTenant`,
`IngestTenant`, `AdminTenant` or `ReadOrShareTenant`, or a router-wide
`dependencies=[Depends(RequireScope(...))]`. tests/test_scopes.py fails for any route that
authenticates without one of these.
"""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.db.session import SessionDep
from app.routing import reject_unknown_query
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


def _missing_key_message(request: Request, missing: str) -> str:
    """Build the 401 message for a request without a Bearer credential, naming what the
    request sent instead (never its value)."""
    authorization = request.headers.get("authorization")
    if authorization is not None and authorization.strip():
        return (
            f"{missing}: the Authorization header does not start with `Bearer `; send the "
            "key as `Authorization: Bearer <key>`."
        )
    if "x-api-key" in request.headers:
        return (
            f"{missing}: revcov does not read the X-API-Key header; send the key as "
            "`Authorization: Bearer <key>`."
        )
    return f"{missing}; send it as `Authorization: Bearer <key>`."


async def get_caller(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise InvalidApiKeyError(
            _missing_key_message(request, "Missing API key"),
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

    async def __call__(self, request: Request, caller: CurrentCaller) -> Tenant:
        _check_scope(caller.api_key, self.scope)
        reject_unknown_query(request)
        return caller.tenant

    def __repr__(self) -> str:
        return f"RequireScope({self.scope!r})"


def _check_scope(api_key: ApiKey, scope: ApiKeyScope) -> None:
    if scope not in api_key.scopes:
        granted = ", ".join(api_key.scopes)
        raise MissingScopeError(
            f"This route needs an API key with the {scope!r} scope, but key "
            f"{api_key.id} has only {granted}; use a key with that scope or "
            "create one through POST /v1/api-keys."
        )


class RequireScopeOrShareToken:
    """A dependency that returns the tenant of the share token in the `token` query
    parameter, or else of the bearer API key, which needs `scope`.

    A share token is read only here, so it opens the routes that use this dependency and
    no other. When a request carries both, the share token decides.
    """

    def __init__(self, scope: ApiKeyScope) -> None:
        self.scope = scope

    async def __call__(
        self,
        request: Request,
        session: SessionDep,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        token: Annotated[
            str | None,
            Query(
                description="A share token from `POST /v1/share-tokens`, in place of an "
                "API key, for displays that cannot send headers."
            ),
        ] = None,
    ) -> Tenant:
        if token is not None:
            tenant = await tenant_service.authenticate_share_token(session, token)
            reject_unknown_query(request)
            return tenant
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise InvalidApiKeyError(
                "Missing credentials; send an API key as `Authorization: Bearer <key>` or "
                "a share token as the `token` query parameter.",
                headers={"WWW-Authenticate": "Bearer"},
            )
        api_key, tenant = await tenant_service.authenticate(session, credentials.credentials)
        _check_scope(api_key, self.scope)
        reject_unknown_query(request)
        return tenant

    def __repr__(self) -> str:
        return f"RequireScopeOrShareToken({self.scope!r})"


ReadTenant = Annotated[Tenant, Depends(RequireScope("read"))]
IngestTenant = Annotated[Tenant, Depends(RequireScope("ingest"))]
AdminTenant = Annotated[Tenant, Depends(RequireScope("admin"))]
ReadOrShareTenant = Annotated[Tenant, Depends(RequireScopeOrShareToken("read"))]
