"""Environment settings of the service (``GEO_MINZHENG_*``) and API-key hashing.

Settings come from the environment (pydantic-settings), never from globals read at import time:
``Settings()`` reads the environment when it is called. Analysis parameters are function
arguments, not settings (STYLE.md #8).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from geo_minzheng import params
from geo_minzheng.params import Profile

Role = Literal["viewer", "editor", "admin"]
#: Roles in increasing order of power: each role may do everything the roles before it may.
ROLES: tuple[str, ...] = ("viewer", "editor", "admin")

# scrypt cost parameters (RFC 7914): n=2**14, r=8, p=1 takes ~30 ms and 16 MiB, the interactive
# login setting recommended by the RFC's authors; salts are 16 random bytes.
_SCRYPT_N = 2**14
_SCRYPT_R = 8
_SCRYPT_P = 1
_SALT_BYTES = 16


def hash_api_key(key: str, *, salt: bytes | None = None) -> str:
    """Hash an API key for storage in settings: ``scrypt$<salt hex>$<digest hex>``.

    Only the hash is ever stored; a leaked settings file does not reveal the keys.

    Parameters
    ----------
    key
        The secret key handed to the client (at least 16 characters).
    salt
        Random salt; a fresh one is drawn when omitted (tests pass one to be reproducible).
    """
    if len(key) < 16:
        msg = f"API key must be at least 16 characters long, got {len(key)}"
        raise ValueError(msg)
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    digest = hashlib.scrypt(key.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P)
    return f"scrypt${salt.hex()}${digest.hex()}"


def verify_api_key(key: str, stored_hash: str) -> bool:
    """True when ``key`` matches ``stored_hash`` (constant-time comparison)."""
    try:
        scheme, salt_hex, digest_hex = stored_hash.split("$")
        salt, expected = bytes.fromhex(salt_hex), bytes.fromhex(digest_hex)
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    digest = hashlib.scrypt(key.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P)
    return hmac.compare_digest(digest, expected)


class ApiKey(BaseModel):
    """One API key: a name for the audit history, its role and the salted hash of the secret."""

    name: str = Field(min_length=1, max_length=64)
    role: Role
    hash: str

    @field_validator("hash")
    @classmethod
    def _check_hash(cls, value: str) -> str:
        parts = value.split("$")
        if len(parts) != 3 or parts[0] != "scrypt":
            msg = (
                "API key hash must look like 'scrypt$<salt hex>$<digest hex>' "
                "(make one with geo_minzheng.settings.hash_api_key), got a value of another form"
            )
            raise ValueError(msg)
        return value


class Settings(BaseSettings):
    """Settings, read from ``GEO_MINZHENG_*`` environment variables and a ``.env`` file.

    The ``.env`` file is read from the current directory when it exists (``GEO_MINZHENG_*``
    lines, as in the environment); a variable set in the environment wins over the file.
    Complex values (``api_keys``, ``cors_origins``) are JSON, e.g.
    ``GEO_MINZHENG_API_KEYS='[{"name": "ops", "role": "editor", "hash": "scrypt$..."}]'``.
    The CLI, the demo and the service read the environment only through this object.
    """

    model_config = SettingsConfigDict(
        env_prefix="GEO_MINZHENG_", extra="ignore", env_file=".env", env_file_encoding="utf-8"
    )

    #: ``gpkg:///abs/path/store.gpkg`` (embedded default) or ``postgresql://user@host/db``.
    store_url: str = "gpkg://geo-minzheng-store.gpkg"
    #: Layer catalog loaded at start; its layers are imported into an empty store.
    catalog: Path | None = None
    #: Language of pages and messages when the client does not ask: 'zh' (zh-CN) or 'en'.
    lang: Literal["zh", "en"] = "zh"
    #: Base map of the web maps: OpenStreetMap, 天地图 (needs a token), an intranet URL, or none.
    basemap: Literal["osm", "tianditu", "intranet", "none"] = "osm"
    tianditu_token: str | None = None
    #: XYZ template such as ``http://tiles.intranet/{z}/{x}/{y}.png`` for basemap='intranet'.
    intranet_tile_url: str | None = None
    intranet_tile_attribution: str = "内网底图 / intranet base map"
    #: Origins allowed by CORS; empty means no cross-origin access.
    cors_origins: list[str] = Field(default_factory=list)
    #: Largest request body accepted, in bytes (larger: 413).
    max_request_bytes: int = Field(default=2_000_000, gt=0)
    #: Most features one items page returns (the ``limit`` parameter's maximum).
    max_items_limit: int = Field(default=1000, gt=0)
    #: Most demand/facility records an analysis request may carry inline.
    max_analysis_features: int = Field(default=5000, gt=0)
    api_keys: list[ApiKey] = Field(default_factory=list)
    #: When true, reading layers also needs a key (role viewer or higher).
    require_key_for_read: bool = False
    #: Build the walk network in the background at start (else on the first analysis).
    build_network_on_start: bool = True
    #: Worker threads for long analyses (jobs).
    job_workers: int = Field(default=2, gt=0, le=16)
    #: Street network the analyses use: walk (default) or drive (params.PROFILE_DESCRIPTION).
    network_profile: Profile = params.DEFAULT_PROFILE
    #: Walking speed, m/s; default the elderly speed of params (MUTCD 2009 §4E.06).
    walk_speed_mps: float = params.ELDERLY_WALK_SPEED_MPS

    @field_validator("walk_speed_mps")
    @classmethod
    def _check_speed(cls, value: float) -> float:
        return params.check_walk_speed_mps(value, name="GEO_MINZHENG_WALK_SPEED_MPS")

    def resolved_tianditu_token(self) -> str | None:
        """The 天地图 token, or None when unset or blank."""
        return self.tianditu_token.strip() if self.tianditu_token else None


def _main(argv: list[str]) -> int:
    """``python -m geo_minzheng.settings hash-key``: hash a key read from stdin."""
    if argv != ["hash-key"]:
        sys.stderr.write("用法 / usage: echo KEY | python -m geo_minzheng.settings hash-key\n")
        return 2
    key = sys.stdin.readline().strip()
    sys.stdout.write(hash_api_key(key) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
