"""Server settings for tests: API keys for a few principals, anonymous access on, no rate limit."""

from __future__ import annotations

from enclave.server.authentication import api_key_hash
from enclave.settings import ApiKeySettings, AuthSettings, LimitSettings, ServerSettings

#: principal → (API key, groups)
KEYS = {
    "ola": ("enc-test-ola-everyone", ["everyone"]),
    "bente": ("enc-test-bente-board", ["everyone", "board"]),
}


def server_settings(settings, keys: dict[str, tuple[str, list[str]]] | None = None, limits: LimitSettings | None = None,
                    **auth):
    """``settings`` with ``keys`` (default ``KEYS``) as API keys, anonymous access on (as ``everyone``)
    and no rate limit; ``auth`` overrides AuthSettings fields, ``limits`` the limits."""
    entries = [ApiKeySettings(principal=p, groups=g, sha256=api_key_hash(k)) for p, (k, g) in (keys or KEYS).items()]
    server = ServerSettings(auth=AuthSettings(**{"api_keys": entries, "anonymous": True, **auth}),
                            limits=limits or LimitSettings(requests_per_minute=None))
    return settings.model_copy(update={"server": server})


def bearer(key_or_principal: str) -> dict[str, str]:
    """The Authorization header for a principal of ``KEYS`` (or a literal key)."""
    key = KEYS[key_or_principal][0] if key_or_principal in KEYS else key_or_principal
    return {"Authorization": f"Bearer {key}"}
