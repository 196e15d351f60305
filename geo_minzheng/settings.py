"""Environment settings of the service (``GEO_MINZHENG_*``) and API keys: making, hashing, checking.

Settings come from the environment (pydantic-settings), never from globals read at import time:
``Settings()`` reads the environment when it is called. Analysis parameters are function
arguments, not settings (docs/workflows.md).

API keys made by ``python -m geo_minzheng.settings new-key`` look like
``gm_<key id>_<secret>``: 8 hex digits naming the key, then 256 random bits. The settings keep
``hmac-sha256$<key id>$<salt>$<digest>``: the service finds the one entry by the key ID and
checks a keyed digest (HMAC-SHA256), which takes microseconds. A slow hash is not needed: it
protects guessable passwords, and a 256-bit random secret cannot be guessed. Keys people chose
themselves (hashed with ``hash-key``, ``scrypt$...``) still verify, with scrypt (~30 ms each).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import re
import secrets
import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from geo_minzheng import params
from geo_minzheng.params import Profile

Role = Literal["viewer", "editor", "admin"]
#: Roles in increasing order of power: each role may do everything the roles before it may.
ROLES: tuple[str, ...] = ("viewer", "editor", "admin")

# scrypt cost parameters (RFC 7914): n=2**14, r=8, p=1 takes ~30 ms and 16 MiB, the interactive
# login setting recommended by the RFC's authors; salts are 16 random bytes. Used only for keys
# that people chose themselves (they may be guessable), never for keys made by new_api_key.
_SCRYPT_N = 2**14
_SCRYPT_R = 8
_SCRYPT_P = 1
_SALT_BYTES = 16
#: A key made by :func:`new_api_key`: ``gm_``, an 8-hex-digit key ID, ``_``, 43+ URL-safe chars.
_KEY = re.compile(r"gm_([0-9a-f]{8})_([A-Za-z0-9_-]{43,128})")
_HMAC_HASH = re.compile(r"hmac-sha256\$([0-9a-f]{8})\$([0-9a-f]{32})\$([0-9a-f]{64})")
_SCRYPT_HASH = re.compile(r"scrypt\$([0-9a-f]+)\$([0-9a-f]+)")


def new_api_key() -> str:
    """A new random API key ``gm_<key id>_<secret>`` (32-bit ID, 256-bit secret)."""
    return f"gm_{secrets.token_hex(4)}_{secrets.token_urlsafe(32)}"


def api_key_id(key: str) -> str | None:
    """The key ID of a key made by :func:`new_api_key` (not secret), else None."""
    match = _KEY.fullmatch(key)
    return match.group(1) if match else None


def hash_key_id(stored_hash: str) -> str | None:
    """The key ID a stored hash belongs to (``hmac-sha256`` hashes), None for scrypt hashes."""
    match = _HMAC_HASH.fullmatch(stored_hash)
    return match.group(1) if match else None


def _hmac_digest(key: str, salt: bytes) -> bytes:
    return hmac.new(salt, key.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()


def _scrypt_digest(key: str, salt: bytes) -> bytes:
    return hashlib.scrypt(
        key.encode("utf-8", "surrogatepass"), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P
    )


def hash_api_key(key: str, *, salt: bytes | None = None) -> str:
    """Hash an API key for storage in settings; only the hash is ever stored.

    A key made by :func:`new_api_key` gets ``hmac-sha256$<key id>$<salt hex>$<digest hex>``
    (checked in microseconds); any other key, chosen by a person and so perhaps guessable, gets
    the slow ``scrypt$<salt hex>$<digest hex>``. A leaked settings file reveals no key.

    Parameters
    ----------
    key
        The secret key handed to the client (at least 16 characters).
    salt
        16 random bytes; fresh ones are drawn when omitted (tests pass some to be reproducible).
    """
    if len(key) < 16:
        msg = f"API key must be at least 16 characters long, got {len(key)}"
        raise ValueError(msg)
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    key_id = api_key_id(key)
    if key_id is not None:
        return f"hmac-sha256${key_id}${salt.hex()}${_hmac_digest(key, salt).hex()}"
    return f"scrypt${salt.hex()}${_scrypt_digest(key, salt).hex()}"


def verify_api_key(key: str, stored_hash: str) -> bool:
    """True when ``key`` matches ``stored_hash`` (either form; constant-time comparison)."""
    match = _HMAC_HASH.fullmatch(stored_hash)
    if match is not None:
        key_id, salt_hex, digest_hex = match.groups()
        if api_key_id(key) != key_id:
            return False
        digest = _hmac_digest(key, bytes.fromhex(salt_hex))
        return hmac.compare_digest(digest, bytes.fromhex(digest_hex))
    match = _SCRYPT_HASH.fullmatch(stored_hash)
    if match is None:
        return False
    try:
        salt, expected = bytes.fromhex(match.group(1)), bytes.fromhex(match.group(2))
    except ValueError:
        return False
    return hmac.compare_digest(_scrypt_digest(key, salt), expected)


class ApiKey(BaseModel):
    """One API key: a name for the audit history, its role and the salted hash of the secret."""

    name: str = Field(min_length=1, max_length=64)
    role: Role
    hash: str

    @field_validator("hash")
    @classmethod
    def _check_hash(cls, value: str) -> str:
        if _HMAC_HASH.fullmatch(value) is None and _SCRYPT_HASH.fullmatch(value) is None:
            msg = (
                "API key hash must look like 'hmac-sha256$<key id>$<salt hex>$<digest hex>' or "
                "'scrypt$<salt hex>$<digest hex>' (make a key and its hash with "
                "'python -m geo_minzheng.settings new-key'), got a value of another form"
            )
            raise ValueError(msg)
        return value

    @property
    def key_id(self) -> str | None:
        """The key ID of an ``hmac-sha256`` entry (None for a scrypt entry)."""
        return hash_key_id(self.hash)


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
    #: Wrong API keys one client address may send per window before its keyed requests get 429.
    max_key_failures: int = Field(default=10, gt=0)
    #: Length of that window, seconds (also the longest Retry-After a refused client is told).
    key_failure_window_s: float = Field(default=60.0, gt=0, le=86_400)
    #: When true, reading layers also needs a key (role viewer or higher).
    require_key_for_read: bool = False
    #: Build the walk network in the background at start (else on the first analysis).
    build_network_on_start: bool = True
    #: Worker threads for long analyses (jobs).
    job_workers: int = Field(default=2, gt=0, le=16)
    #: Most analysis jobs queued or running at once in the whole service (its worker processes
    #: share the count through the store); one more gets 429 with Retry-After.
    job_queue_limit: int = Field(default=16, gt=0, le=10_000)
    #: Street network the analyses use: walk (default) or drive (params.PROFILE_DESCRIPTION).
    network_profile: Profile = params.DEFAULT_PROFILE
    #: Walking speed, m/s; default the elderly speed of params (MUTCD 2009 §4E.06).
    walk_speed_mps: float = params.ELDERLY_WALK_SPEED_MPS
    #: Province GeoPackage of the province coverage job (geo_minzheng.province); None: the
    #: demo province (演示情景), built on first use in ``province_dir``.
    province_file: Path | None = None
    #: Folder of the province runs' GeoPackages (one per run), or a postgresql:// URL.
    province_results: str = "province-runs"
    #: Dask scheduler of province jobs (tcp://host:8786); None: a local cluster per job.
    dask_scheduler: str | None = None
    #: Worker processes of that local cluster (None: one per CPU).
    dask_workers: int | None = Field(default=None, gt=0, le=256)

    @field_validator("walk_speed_mps")
    @classmethod
    def _check_speed(cls, value: float) -> float:
        return params.check_walk_speed_mps(value, name="GEO_MINZHENG_WALK_SPEED_MPS")

    @model_validator(mode="after")
    def _unique_key_ids(self) -> Settings:
        seen: dict[str, str] = {}
        for entry in self.api_keys:
            key_id = entry.key_id
            if key_id is not None and key_id in seen:
                msg = (
                    f"GEO_MINZHENG_API_KEYS: keys '{seen[key_id]}' and '{entry.name}' have the "
                    f"same key ID '{key_id}'; make a new key for one of them with new-key"
                )
                raise ValueError(msg)
            if key_id is not None:
                seen[key_id] = entry.name
        return self

    def resolved_tianditu_token(self) -> str | None:
        """The 天地图 token, or None when unset or blank."""
        return self.tianditu_token.strip() if self.tianditu_token else None


def _main(argv: list[str]) -> int:
    """``python -m geo_minzheng.settings new-key|hash-key``: make a key, or hash one from stdin."""
    parser = argparse.ArgumentParser(
        prog="python -m geo_minzheng.settings",
        description="API 密钥 / API keys for GEO_MINZHENG_API_KEYS",
    )
    verbs = parser.add_subparsers(dest="verb", required=True)
    make = verbs.add_parser(
        "new-key", help="生成新密钥及其设置项 / make a new key and its settings entry"
    )
    make.add_argument("--name", required=True, help="密钥名称（写入修改历史）/ name in the history")
    make.add_argument("--role", required=True, choices=ROLES, help="角色 / role")
    verbs.add_parser("hash-key", help="对标准输入中的密钥求哈希 / hash a key read from stdin")
    args = parser.parse_args(argv)
    if args.verb == "hash-key":
        key = sys.stdin.readline().strip()
        try:
            stored = hash_api_key(key)
        except ValueError as exc:
            sys.stderr.write(f"错误 / error: {exc}\n")
            return 2
        if api_key_id(key) is None:
            sys.stderr.write(
                "提示 / note: 自选密钥用 scrypt 校验（每次约 30 毫秒）；建议用 new-key 生成密钥。"
                " / a key you chose is checked with scrypt (~30 ms each); prefer new-key.\n"
            )
        sys.stdout.write(stored + "\n")
        return 0
    key = new_api_key()
    try:
        entry = ApiKey(name=args.name, role=args.role, hash=hash_api_key(key))
    except ValidationError as exc:
        why = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        sys.stderr.write(f"错误 / error: {why}\n")
        return 2
    sys.stdout.write(
        "API 密钥（只显示这一次，请交给使用者）/ API key (shown only once; give it to its user):\n"
        f"{key}\n"
        "GEO_MINZHENG_API_KEYS 中的一项 / entry for GEO_MINZHENG_API_KEYS:\n"
        f"{json.dumps(entry.model_dump(), ensure_ascii=False)}\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
