"""API keys: the ``X-API-Key`` header, roles viewer < editor < admin, keys stored as scrypt hashes.

Verifying a scrypt hash takes ~30 ms on purpose; keys that verified once are remembered in this
process under an HMAC of the key with a random per-process secret (never the key itself), so a
busy editor does not pay the cost on every request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from api.errors import ApiProblem
from geo_minzheng.settings import ROLES, ApiKey, Settings, verify_api_key

API_KEY_HEADER = "X-API-Key"
_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="API 密钥 / API key")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name (recorded in the audit history) and role."""

    name: str
    role: str

    def has(self, role: str) -> bool:
        """True when this principal's role is ``role`` or a stronger one."""
        return ROLES.index(self.role) >= ROLES.index(role)


ANONYMOUS = Principal("anonymous", "viewer")


class KeyRing:
    """The configured keys, with a small cache of keys that verified."""

    def __init__(self, keys: list[ApiKey], *, cache_size: int = 256) -> None:
        self._keys = list(keys)
        self._secret = secrets.token_bytes(32)
        self._cache: OrderedDict[bytes, Principal] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def identify(self, key: str) -> Principal | None:
        """The principal of ``key``, or None when no configured key matches."""
        tag = hmac.new(self._secret, key.encode(), hashlib.sha256).digest()
        with self._lock:
            hit = self._cache.get(tag)
            if hit is not None:
                self._cache.move_to_end(tag)
                return hit
        for entry in self._keys:
            if verify_api_key(key, entry.hash):
                principal = Principal(entry.name, entry.role)
                with self._lock:
                    self._cache[tag] = principal
                    while len(self._cache) > self._cache_size:
                        self._cache.popitem(last=False)
                return principal
        return None


def _keyring(request: Request) -> KeyRing:
    return request.app.state.gm.keyring


def _settings(request: Request) -> Settings:
    return request.app.state.gm.settings


def _unauthorized(detail: str) -> ApiProblem:
    return ApiProblem(
        401, detail, headers={"WWW-Authenticate": f'ApiKey header="{API_KEY_HEADER}"'}
    )


def require(role: str, *, anonymous_ok: bool = True):  # noqa: ANN201 - a FastAPI dependency
    """A dependency that admits a caller whose key has ``role`` or a stronger one.

    With ``anonymous_ok`` a viewer needs no key unless settings.require_key_for_read is set.
    """

    def dependency(
        request: Request, key: Annotated[str | None, Depends(_header)] = None
    ) -> Principal:
        if not key:
            reads_open = anonymous_ok and not _settings(request).require_key_for_read
            if role == "viewer" and reads_open:
                return ANONYMOUS
            msg = f"this request needs an API key with role '{role}' in the {API_KEY_HEADER} header"
            raise _unauthorized(msg)
        principal = _keyring(request).identify(key)
        if principal is None:
            msg = f"the API key in the {API_KEY_HEADER} header is not valid"
            raise _unauthorized(msg)
        if not principal.has(role):
            msg = f"key '{principal.name}' has role '{principal.role}'; this needs '{role}'"
            raise ApiProblem(403, msg)
        return principal

    return dependency


Viewer = Annotated[Principal, Depends(require("viewer"))]
#: A viewer who must show a key even when reads are open (e.g. for the audit history).
KeyedViewer = Annotated[Principal, Depends(require("viewer", anonymous_ok=False))]
Editor = Annotated[Principal, Depends(require("editor"))]
Admin = Annotated[Principal, Depends(require("admin"))]
