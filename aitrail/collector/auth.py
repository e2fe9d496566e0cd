"""Bearer tokens -> tenants. Tokens are configured by their SHA-256, never in clear.

aitrail.toml:

    [auth]
    tokens = [
      { sha256 = "<hex sha256 of the token>", tenant = "acme" },
    ]

`aitrail token new --tenant acme` makes a token and prints the line to add. A span's tenant
comes from the token that sent it, never from its own attributes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from ..store.config import check_tenant
from ..store.errors import ConfigError

DEFAULT_TENANT = "default"


class AuthError(Exception):
    """No token, or one this collector does not know."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "atr_" + secrets.token_urlsafe(32)


class Authenticator:
    def __init__(self, tokens: Mapping[str, str]) -> None:
        """tokens: sha256 hex -> tenant. Empty: no authentication, every span is `default`."""
        self.tokens = dict(tokens)

    @property
    def enabled(self) -> bool:
        return bool(self.tokens)

    @classmethod
    def from_config(cls, doc: Mapping[str, Any], where: str = "config") -> Authenticator:
        tokens: dict[str, str] = {}
        for i, entry in enumerate((doc.get("auth") or {}).get("tokens") or []):
            if not isinstance(entry, dict) or "sha256" not in entry or "tenant" not in entry:
                raise ConfigError(f"{where}: [auth] tokens[{i}] needs sha256 and tenant")
            digest = str(entry["sha256"]).lower()
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ConfigError(f"{where}: [auth] tokens[{i}].sha256 must be 64 hex "
                                  "characters (the SHA-256 of the token, not the token)")
            try:
                tokens[digest] = check_tenant(str(entry["tenant"]))
            except ValueError as e:
                raise ConfigError(f"{where}: [auth] tokens[{i}]: {e}") from None
        return cls(tokens)

    def tenant_for(self, headers: Iterable[tuple[str, str]]) -> str:
        """The tenant of a request, from its `authorization: Bearer ...` header."""
        if not self.tokens:
            return DEFAULT_TENANT
        value = next((v for k, v in headers if k.lower() == "authorization"), None)
        if not value:
            raise AuthError("missing authorization: Bearer <token> "
                            "(OTEL_EXPORTER_OTLP_HEADERS=authorization=Bearer%20<token>)")
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("authorization must be 'Bearer <token>'")
        digest = hash_token(token.strip())
        for known, tenant in self.tokens.items():
            if hmac.compare_digest(known, digest):
                return tenant
        raise AuthError("unknown token")
