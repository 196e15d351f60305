"""API keys: the ``X-API-Key`` header, roles viewer < editor < admin, wrong keys rate-limited.

Keys made by ``python -m geo_minzheng.settings new-key`` carry their key ID, so a request's key
is checked against the one entry with that ID, by a keyed digest: microseconds, right or wrong
(:mod:`geo_minzheng.settings`). Keys people chose themselves (scrypt hashes) still work; they
cost ~30 ms per entry to check, so keys that verified once are remembered in this process under
an HMAC of the key with a random per-process secret (never the key itself), and only those
entries are tried for a key without an ID.

A client address that sends more than ``max_key_failures`` wrong keys within
``key_failure_window_s`` gets 429 with Retry-After for its keyed requests until the window has
passed (reads without a key are not affected): guessing costs the guesser, not the service.
Each worker process counts on its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from api.errors import ApiProblem
from geo_minzheng.settings import ROLES, ApiKey, Settings, api_key_id, verify_api_key

log = logging.getLogger("geo_minzheng.api")

API_KEY_HEADER = "X-API-Key"
#: Longest a rate-limited request is held before its 429, seconds.
_TARPIT_S = 0.25
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


class FailureLimiter:
    """Wrong-key attempts per client address in a sliding window (bounded memory).

    Parameters
    ----------
    max_failures
        Wrong keys a client may send within ``window_s`` before it is refused.
    window_s
        Length of the window, seconds.
    max_clients
        Client addresses remembered (the least recently failing are forgotten first).
    """

    def __init__(self, max_failures: int, window_s: float, *, max_clients: int = 4096) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._max_clients = max_clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after_s(self, client: str) -> float:
        """Seconds until ``client`` may try keys again; 0 when it may now."""
        now = time.monotonic()
        with self._lock:
            times = self._failures.get(client)
            if times is None:
                return 0.0
            while times and times[0] <= now - self.window_s:
                times.popleft()
            if len(times) < self.max_failures:
                return 0.0
            return max(0.0, times[-self.max_failures] + self.window_s - now)

    def failed(self, client: str) -> None:
        """Count one wrong key from ``client``."""
        now = time.monotonic()
        with self._lock:
            times = self._failures.get(client)
            if times is None:
                times = self._failures[client] = deque(maxlen=self.max_failures)
                while len(self._failures) > self._max_clients:
                    self._failures.popitem(last=False)
            else:
                self._failures.move_to_end(client)
            times.append(now)


class KeyRing:
    """The configured keys: by key ID (fast digests) and a list of scrypt entries."""

    def __init__(
        self,
        keys: list[ApiKey],
        *,
        max_failures: int = 10,
        window_s: float = 60.0,
        cache_size: int = 256,
    ) -> None:
        self._by_id = {entry.key_id: entry for entry in keys if entry.key_id is not None}
        self._scrypt = [entry for entry in keys if entry.key_id is None]
        self._secret = secrets.token_bytes(32)
        self._cache: OrderedDict[bytes, Principal] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self.limiter = FailureLimiter(max_failures, window_s)
        if self._scrypt:
            names = ", ".join(entry.name for entry in self._scrypt)
            log.warning(
                "API keys %s use scrypt hashes (a wrong key costs ~30 ms per such key); "
                "issue new ones with 'python -m geo_minzheng.settings new-key'",
                names,
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        """The keys and the wrong-key limits of ``settings``."""
        return cls(
            settings.api_keys,
            max_failures=settings.max_key_failures,
            window_s=settings.key_failure_window_s,
        )

    def identify(self, key: str) -> Principal | None:
        """The principal of ``key``, or None when no configured key matches."""
        key_id = api_key_id(key)
        if key_id is not None:  # one keyed digest against the one entry with that ID
            entry = self._by_id.get(key_id)
            if entry is not None and verify_api_key(key, entry.hash):
                return Principal(entry.name, entry.role)
            return None
        if not self._scrypt:
            return None
        tag = hmac.new(self._secret, key.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
        with self._lock:
            hit = self._cache.get(tag)
            if hit is not None:
                self._cache.move_to_end(tag)
                return hit
        for entry in self._scrypt:
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


def _client(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def require(role: str, *, anonymous_ok: bool = True):  # noqa: ANN201 - a FastAPI dependency
    """A dependency that admits a caller whose key has ``role`` or a stronger one.

    With ``anonymous_ok`` a viewer needs no key unless settings.require_key_for_read is set.
    """

    # async: a wrong or rate-limited key is answered on the event loop, never taking one of the
    # worker threads that the (sync) routes of honest clients run in
    async def dependency(
        request: Request, key: Annotated[str | None, Depends(_header)] = None
    ) -> Principal:
        if not key:
            reads_open = anonymous_ok and not _settings(request).require_key_for_read
            if role == "viewer" and reads_open:
                return ANONYMOUS
            msg = f"this request needs an API key with role '{role}' in the {API_KEY_HEADER} header"
            raise _unauthorized(msg)
        ring, client = _keyring(request), _client(request)
        wait_s = ring.limiter.retry_after_s(client)
        if wait_s > 0:
            retry = max(1, math.ceil(wait_s))
            msg = (
                f"too many wrong API keys from this address (more than "
                f"{ring.limiter.max_failures} in {ring.limiter.window_s:g} s); "
                f"try again in {retry} s"
            )
            # hold the answer (no thread held): a client hammering wrong keys is slowed to about
            # four requests a second instead of crowding out the readers
            await asyncio.sleep(min(wait_s, _TARPIT_S))
            raise ApiProblem(429, msg, headers={"Retry-After": str(retry)})
        principal = ring.identify(key)
        if principal is None:
            ring.limiter.failed(client)
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
