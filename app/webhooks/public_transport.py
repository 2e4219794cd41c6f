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
    """The request's host is or resolves to a loopback, private, link-local, multicast or
    other non-global address."""


class InvalidHostError(httpx.ConnectError):
    """The request's host is not a valid host name, such as one with a label over 63
    characters, so no lookup can succeed."""


# IPv6 prefixes whose last 32 bits are an IPv4 address that a host or a NAT64 gateway
# may reach: IPv4-compatible, IPv4-mapped, IPv4-translated and the NAT64 prefixes (RFC 4291,
# RFC 2765, RFC 6052, RFC 8215).
_EMBEDDING_IPV4 = tuple(
    ipaddress.ip_network(prefix)
    for prefix in ("::/96", "::ffff:0:0/96", "::ffff:0:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48")
)


def is_public_address(address: str) -> bool:
    """Return whether an address, and any IPv4 address embedded in it, is global."""
    parsed = ipaddress.ip_address(address)
    # Python counts multicast addresses as global, but no API is served from one.
    if not parsed.is_global or parsed.is_multicast:
        return False
    if isinstance(parsed, ipaddress.IPv6Address):
        embedded = []
        if any(parsed in network for network in _EMBEDDING_IPV4):
            embedded.append(ipaddress.IPv4Address(int(parsed) & 0xFFFFFFFF))
        if parsed.sixtofour is not None:
            embedded.append(parsed.sixtofour)
        if parsed.teredo is not None:
            embedded.extend(parsed.teredo)
        return all(inner.is_global for inner in embedded)
    return True


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
        if not is_public_address(host):
            raise NonPublicAddressError(f"host {host} is not a public address")
        return host
    loop = asyncio.get_running_loop()
    try:
        results = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except UnicodeError as error:
        # The IDNA encoding of the name failed before any lookup.
        raise InvalidHostError(f"host {host!r} is not a valid host name: {error}") from error
    except OSError as error:
        raise httpx.ConnectError(f"could not resolve host {host}: {error}") from error
    # The fourth field is the socket address, whose first item is the address text.
    addresses = list(dict.fromkeys(str(result[4][0]) for result in results))
    private = [address for address in addresses if not is_public_address(address)]
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
        if address == host:
            return await self._inner.handle_async_request(request)
        # A copy, so the client's request and its errors keep the host name. httpx built
        # the Host header from the URL when it created the request.
        pinned = httpx.Request(
            request.method,
            request.url.copy_with(host=address),
            headers=request.headers,
            stream=request.stream,
            extensions={**request.extensions, "sni_hostname": host},
        )
        return await self._inner.handle_async_request(pinned)

    async def aclose(self) -> None:
        await self._inner.aclose()
