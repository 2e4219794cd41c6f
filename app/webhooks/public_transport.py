"""An HTTP transport for fetches from survey platform APIs that reaches public addresses only.

An endpoint's `api_base_url` is set by a tenant's admin. Its host is checked when it is
stored (`service.check_api_base_url`), but a host name can resolve to a private address,
then or later. So each request resolves its host, rejects it unless every address is
global, and connects to the address it checked. The name stays in the `Host` header and
in TLS (the `sni_hostname` request extension), so certificates are verified against it.
Connecting to the checked address means that a second lookup cannot return another one.

Connections are not kept alive. A pool keys its connections by address, so a connection
opened and verified for one host name could otherwise carry a request for another name
on the same address.
"""

import asyncio
import ipaddress
import socket

import httpx


class NonPublicAddressError(httpx.ConnectError):
    """The request's host is or resolves to a loopback, private, link-local or other
    non-global address."""


def _is_public(address: str) -> bool:
    return ipaddress.ip_address(address).is_global


async def public_address(host: str, port: int) -> str:
    """Return the address to connect to for `host`, after checking that every address
    it resolves to is global.

    Raises `NonPublicAddressError` for a non-global address, and `httpx.ConnectError`
    when the name does not resolve.
    """
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        if not _is_public(host):
            raise NonPublicAddressError(f"host {host} is not a public address")
        return host
    loop = asyncio.get_running_loop()
    try:
        results = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as error:
        raise httpx.ConnectError(f"could not resolve host {host}: {error}") from error
    # The fourth field is the socket address, whose first item is the address text.
    addresses = list(dict.fromkeys(str(result[4][0]) for result in results))
    private = [address for address in addresses if not _is_public(address)]
    if private:
        raise NonPublicAddressError(
            f"host {host} resolves to the non-public address {private[0]}; "
            "fetches reach public addresses only"
        )
    if not addresses:
        raise httpx.ConnectError(f"host {host} resolves to no address")
    return addresses[0]


class PublicAddressTransport(httpx.AsyncBaseTransport):
    """Send each request to a checked public address of its host (see the module docstring)."""

    def __init__(self, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self._inner = inner or httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_keepalive_connections=0)
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        timeouts = request.extensions.get("timeout", {})
        try:
            # The lookup counts against the connect timeout, as it does inside httpx.
            async with asyncio.timeout(timeouts.get("connect")):
                address = await public_address(host, port)
        except TimeoutError as error:
            raise httpx.ConnectTimeout(f"resolving host {host} timed out") from error
        if address != host:
            # httpx built the Host header from the URL when it created the request.
            request.url = request.url.copy_with(host=address)
            request.extensions = {**request.extensions, "sni_hostname": host}
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()
