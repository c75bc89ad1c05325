"""Who is calling: API keys (stored as SHA-256 hashes), a trusted reverse proxy's headers, or anonymous.

Usage::

    authenticator = Authenticator(settings.server.auth)
    principal = authenticator.authenticate(request.headers, request.client.host)   # or raises AuthError
    principal.name, principal.groups        # "ola", ("everyone", "hr")

``enclave keys create`` prints a new key ([new_api_key][enclave.server.authentication.new_api_key]) and
the ``server.auth.api_keys`` entry holding its hash ([api_key_hash][enclave.server.authentication.api_key_hash]);
the key itself is never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from enclave.settings import AuthSettings

KEY_PREFIX = "enc-"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. ``groups``: the ACL groups whose documents it may see; ``caller_id``
    names the credential for rate limiting (``key:<hash prefix>``, ``proxy:<user>``, ``anonymous:<address>``,
    ``mcp:<name>``: the principal ``enclave mcp`` is configured to run as)."""

    name: str
    groups: tuple[str, ...]
    via: Literal["api_key", "proxy", "anonymous", "configured"]
    caller_id: str


class AuthError(Exception):
    """Authentication failed: ``status`` 401 (missing or bad credentials) or 403 (no access)."""

    def __init__(self, status: Literal[401, 403], detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def api_key_hash(key: str) -> str:
    """The lowercase hex SHA-256 of ``key``, as ``server.auth.api_keys[].sha256`` stores it. A plain
    hash suffices: keys are 256-bit random strings ([new_api_key][enclave.server.authentication.new_api_key]), not passwords."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_api_key() -> str:
    """A new API key: ``enc-`` and 43 URL-safe characters (256 random bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


class Authenticator:
    """Resolves a request's credentials to a [Principal][enclave.server.authentication.Principal].

    Usage::

        Authenticator(AuthSettings(api_keys=[...], anonymous=False)).authenticate(headers, "10.0.0.5")

    In order: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; then, with ``trusted_headers``
    on, ``X-Forwarded-User`` / ``X-Forwarded-Groups`` from an address in ``trusted_proxies``; then
    anonymous when ``anonymous`` is on. A key is hashed and compared with every stored hash in constant
    time (``hmac.compare_digest``, no early exit). Raises AuthError: 401 for no or bad credentials,
    403 for a principal with no groups or proxy headers from an untrusted address.
    """

    def __init__(self, settings: AuthSettings) -> None:
        self.settings = settings
        self._keys = [(k.sha256.encode("ascii"), k) for k in settings.api_keys]

    def authenticate(self, headers: Mapping[str, str], client_host: str | None) -> Principal:
        key = self._presented_key(headers)
        if key is not None:
            return self._by_key(key)
        user = headers.get(self.settings.user_header)
        if self.settings.trusted_headers and user is not None:
            if client_host not in self.settings.trusted_proxies:
                raise AuthError(403, f"{self.settings.user_header} came from {client_host}, which is not a trusted proxy")
            return self._checked(Principal(
                user.strip(), _group_list(headers.get(self.settings.groups_header, "")), "proxy", f"proxy:{user.strip()}"))
        if self.settings.anonymous:
            return self._checked(Principal(
                "anonymous", tuple(self.settings.anonymous_groups), "anonymous", f"anonymous:{client_host}"))
        raise AuthError(401, "authentication required: send an API key as 'Authorization: Bearer <key>'")

    @staticmethod
    def _presented_key(headers: Mapping[str, str]) -> str | None:
        authorization = headers.get("authorization")
        if authorization is not None:
            scheme, _, credentials = authorization.strip().partition(" ")
            if scheme.lower() != "bearer" or not credentials.strip():
                raise AuthError(401, "the Authorization header must be 'Bearer <API key>'")
            return credentials.strip()
        key = headers.get("x-api-key")
        return None if key is None else key.strip()

    def _by_key(self, key: str) -> Principal:
        digest = api_key_hash(key).encode("ascii")
        found = None
        for stored, entry in self._keys:  # every entry is compared: the time does not depend on which matched
            if hmac.compare_digest(digest, stored):
                found = entry
        if found is None:
            raise AuthError(401, "invalid API key")
        return self._checked(Principal(found.principal, tuple(found.groups), "api_key", f"key:{found.sha256[:16]}"))

    @staticmethod
    def _checked(principal: Principal) -> Principal:
        if not principal.name:
            raise AuthError(401, "the proxy named no user")
        if not principal.groups:
            raise AuthError(403, f"{principal.name!r} belongs to no group, so may see no document")
        return principal


def _group_list(value: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(g.strip() for g in value.split(",") if g.strip()))
