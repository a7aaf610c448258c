"""Which hosts the Braze connection may talk to.

Only https to Braze's REST hosts, or the loopback URLs listed in ``BRAZE_LOCAL_ENDPOINTS`` (the
sandbox, scheme, host and port as listed: any other loopback port may be Redis or PostgreSQL). Anything else (other hosts, IP literals, userinfo tricks,
other schemes, DNS names on Braze's domains that resolve to private addresses) is refused with a
message that says why, so a configurable URL can never make the server request somewhere else.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from django.conf import settings
from django.core import checks
from django.db import models

BRAZE_DOMAINS = ("braze.com", "braze.eu")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
# A DNS host name in ASCII: letters, digits and inner hyphens, labels joined by single dots. Look-alike
# letters (Cyrillic "а", fullwidth "ｂ"), "_", "*", ";" or an empty label are not host names.
_HOST_NAME = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*\Z")
# What resolvers take as an IPv4 address besides dotted quads: 2130706433, 0x7f.1, 0177.0.0.1, 127.1.
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}\Z")


class Instance(models.TextChoices):
    """Braze's REST endpoints, by instance (as in Braze's dashboard)."""

    US_01 = "https://rest.iad-01.braze.com", "US-01"
    US_02 = "https://rest.iad-02.braze.com", "US-02"
    US_03 = "https://rest.iad-03.braze.com", "US-03"
    US_04 = "https://rest.iad-04.braze.com", "US-04"
    US_05 = "https://rest.iad-05.braze.com", "US-05"
    US_06 = "https://rest.iad-06.braze.com", "US-06"
    US_07 = "https://rest.iad-07.braze.com", "US-07"
    US_08 = "https://rest.iad-08.braze.com", "US-08"
    US_10 = "https://rest.us-10.braze.com", "US-10"
    EU_01 = "https://rest.fra-01.braze.eu", "EU-01"
    EU_02 = "https://rest.fra-02.braze.eu", "EU-02"
    AU_01 = "https://rest.au-01.braze.com", "AU-01"
    ID_01 = "https://rest.id-01.braze.com", "ID-01"
    JP_01 = "https://rest.jp-01.braze.com", "JP-01"
    KR_01 = "https://rest.kr-01.braze.com", "KR-01"


class EndpointRefused(ValueError):
    """The URL is not one the connection may use; the message says why."""


def _is_braze_host(host: str) -> bool:
    return any(host == domain or host.endswith("." + domain) for domain in BRAZE_DOMAINS)


def _local_key(scheme: str, host: str, port: int | None) -> tuple[str, str, int]:
    return scheme, host, port or (443 if scheme == "https" else 80)


def local_endpoints_allowed(urls: Iterable[str]) -> set[tuple[str, str, int]]:
    """(scheme, host, port) of each loopback URL in ``urls``; anything else in the list is ignored
    (the ``braze_integration`` system check reports it)."""
    allowed = set()
    for url in urls:
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError:
            continue
        host = (parts.hostname or "").lower().rstrip(".")
        if parts.scheme.lower() in ("http", "https") and host in LOCAL_HOSTS:
            allowed.add(_local_key(parts.scheme.lower(), host, port))
    return allowed


def endpoint_normalize(url: str, *, local_endpoints: Iterable[str] | None = None, resolve: bool = True) -> str:
    """Return ``url`` as scheme://host[:port] if the connection may use it, else raise ``EndpointRefused``.

    Loopback URLs only when ``local_endpoints`` (default ``settings.BRAZE_LOCAL_ENDPOINTS``) lists them."""
    if local_endpoints is None:
        local_endpoints = settings.BRAZE_LOCAL_ENDPOINTS
    text = (url or "").strip()
    if not text:
        raise EndpointRefused("Enter the REST endpoint of your Braze instance.")
    if any(ch in text for ch in "\\\r\n\t ") or any(ord(ch) < 32 for ch in text):
        raise EndpointRefused("The URL contains spaces, backslashes or control characters.")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as err:
        raise EndpointRefused(f"Not a valid URL ({err}).") from None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower().rstrip(".")
    if scheme not in ("https", "http"):
        raise EndpointRefused(f"Only https URLs are allowed, not {scheme or 'a URL without a scheme'}.")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise EndpointRefused("The URL must not contain a user name or password.")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise EndpointRefused("Give the instance URL only, e.g. https://rest.fra-01.braze.eu (no path or query).")
    if not host:
        raise EndpointRefused("The URL has no host.")
    if host in LOCAL_HOSTS:
        bracketed = f"[{host}]" if ":" in host else host
        normalized = f"{scheme}://{bracketed}" + (f":{port}" if port else "")
        if _local_key(scheme, host, port) not in local_endpoints_allowed(local_endpoints):
            raise EndpointRefused(
                f"{normalized} is a local endpoint; local endpoints (the Braze sandbox) are allowed only when "
                "BRAZE_LOCAL_ENDPOINTS lists them (scheme, host and port)."
            )
        return normalized
    if _is_ip_literal(host):
        raise EndpointRefused("IP addresses are not allowed; use your Braze instance's host name.")
    if not _HOST_NAME.match(host):
        raise EndpointRefused(
            f"{host!r} is not a valid host name (only the letters a-z, digits, '-' and '.'; look-alike "
            "letters from other alphabets are refused)."
        )
    if scheme != "https":
        raise EndpointRefused("Braze endpoints must use https.")
    if not _is_braze_host(host):
        raise EndpointRefused(f"{host} is not a Braze host (expected a host under {' or '.join(BRAZE_DOMAINS)}).")
    if port not in (None, 443):
        raise EndpointRefused("Braze endpoints use the standard https port.")
    if resolve:
        _refuse_private_resolution(host)
    return f"https://{host}"


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(_NUMERIC_HOST.match(host))
    return True


def _refuse_private_resolution(host: str) -> None:
    """A Braze host name that resolves to a private or loopback address is refused (DNS rebinding).

    A name that does not resolve here (no network) is accepted: the request itself will fail.
    """
    try:
        infos = socket.getaddrinfo(host, 443, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, OSError):
        return
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise EndpointRefused(f"{host} resolves to a non-public address ({address}); refusing to connect.")


def local_endpoints_check(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """System check: every entry of ``BRAZE_LOCAL_ENDPOINTS`` is a loopback URL, and the old on/off
    switch (which let in every loopback port) is not relied on any more."""
    messages: list[checks.CheckMessage] = []
    for url in settings.BRAZE_LOCAL_ENDPOINTS:
        if not local_endpoints_allowed([url]):
            messages.append(checks.Error(
                f"BRAZE_LOCAL_ENDPOINTS: {url!r} is not a loopback URL such as http://127.0.0.1:9400.",
                hint="List only the local Braze sandbox's URLs; Braze's own hosts need no entry.",
                id="braze_integration.E001"))
    if "BRAZE_ALLOW_LOCAL_ENDPOINTS" in os.environ:
        messages.append(checks.Warning(
            "BRAZE_ALLOW_LOCAL_ENDPOINTS is no longer read.",
            hint="List the sandbox's URLs instead: BRAZE_LOCAL_ENDPOINTS=http://127.0.0.1:9400",
            id="braze_integration.W001"))
    return messages
