"""Bounded load test of the API on loopback: many concurrent clients for a fixed time.

Run: ``nice .venv/bin/python benchmarks/api_load.py [--clients 50] [--seconds 30]``.
Starts ``uvicorn api.app:create_app --factory`` (one worker) in a separate process on the demo
catalog with a fresh GeoPackage store, then drives it with asyncio + httpx clients issuing a
mix of OGC API – Features reads (pages, bbox, property filters, single features, the
collection list) and editor writes (GET for the ETag, then PATCH with If-Match; a 409 from a
race between writers is expected and counted, not an error). Prints p50/p95/p99 latency per
request kind, throughput and errors (any other non-2xx answer or a transport failure).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CATALOG = ROOT / "layers" / "catalog.yml"
EDITOR_KEY = "load-test-editor-key-0123456789"
# Central Changchun, where the demo layers are (WGS84).
BOX = (125.29, 43.83, 125.40, 43.95)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, store: Path) -> subprocess.Popen:
    """uvicorn in its own process, configured through GEO_MINZHENG_* variables."""
    sys.path.insert(0, str(ROOT))
    from geo_minzheng.settings import hash_api_key

    keys = [{"name": "load.editor", "role": "editor", "hash": hash_api_key(EDITOR_KEY)}]
    env = dict(
        os.environ,
        GEO_MINZHENG_CATALOG=str(CATALOG),
        GEO_MINZHENG_STORE_URL=f"gpkg://{store}",
        GEO_MINZHENG_BASEMAP="none",
        GEO_MINZHENG_API_KEYS=json.dumps(keys),
        PYTHONPATH=str(ROOT),
    )
    cmd = [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory",
           "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
           "--no-access-log"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    msg = "the API server did not start within 120 s"
    raise RuntimeError(msg)


class Recorder:
    """Latencies (s) and outcomes per request kind."""

    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)
        self.conflicts = 0
        self.samples: dict[str, str] = {}

    def add(self, kind: str, seconds: float, status: int | None, expected: tuple[int, ...]) -> None:
        self.latency[kind].append(seconds)
        if status == 409 and kind == "patch":
            self.conflicts += 1
        elif status not in expected:
            self.errors[kind] += 1
            self.samples.setdefault(kind, str(status))


async def _timed(rec: Recorder, kind: str, call, expected=(200,)) -> httpx.Response | None:
    start = time.perf_counter()
    try:
        response = await call()
    except httpx.HTTPError as exc:
        rec.samples.setdefault(kind, f"{type(exc).__name__}: {exc}")
        rec.add(kind, time.perf_counter() - start, None, expected)
        return None
    rec.add(kind, time.perf_counter() - start, response.status_code, expected)
    return response


async def client_loop(client: httpx.AsyncClient, rec: Recorder, stop: float, seed: int,
                      ids: dict[str, list[str]]) -> None:  # fmt: skip
    rng = random.Random(seed)
    while time.perf_counter() < stop:
        pick = rng.random()
        if pick < 0.35:
            offset = rng.randrange(0, 2000, 100)
            await _timed(rec, "page", lambda o=offset: client.get(
                "/collections/demand/items", params={"limit": 100, "offset": o}))  # fmt: skip
        elif pick < 0.55:
            x = rng.uniform(BOX[0], BOX[2] - 0.01)
            y = rng.uniform(BOX[1], BOX[3] - 0.01)
            bbox = f"{x:.5f},{y:.5f},{x + 0.01:.5f},{y + 0.01:.5f}"
            await _timed(rec, "bbox", lambda b=bbox: client.get(
                "/collections/roads/items", params={"bbox": b, "limit": 100}))  # fmt: skip
        elif pick < 0.70:
            fid = rng.choice(ids["eldercare"])
            await _timed(
                rec, "feature", lambda f=fid: client.get(f"/collections/eldercare/items/{f}")
            )
        elif pick < 0.80:
            params = {"admin_code": "220102", "limit": 50}
            await _timed(rec, "filter", lambda p=params: client.get(
                "/collections/demand/items", params=p))  # fmt: skip
        elif pick < 0.90:
            await _timed(rec, "collections", lambda: client.get("/collections"))
        else:
            fid = rng.choice(ids["markers"][:5])  # few records, so writers really collide
            url = f"/collections/markers/items/{fid}"
            got = await _timed(rec, "feature", lambda u=url: client.get(u))
            if got is None or got.status_code != 200:
                continue
            status = rng.choice(["intact", "damaged", "missing", "moved"])
            headers = {"X-API-Key": EDITOR_KEY, "If-Match": got.headers["ETag"]}
            await _timed(rec, "patch", lambda u=url, s=status, h=headers: client.patch(
                u, json={"properties": {"status": s}}, headers=h), expected=(200,))  # fmt: skip


async def run(base: str, clients: int, seconds: float) -> tuple[Recorder, float]:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        ids = {}
        for layer in ("eldercare", "markers"):
            page = (await client.get(f"/collections/{layer}/items", params={"limit": 1000})).json()
            ids[layer] = [f["id"] for f in page["features"]]
        rec = Recorder()
        start = time.perf_counter()
        stop = start + seconds
        await asyncio.gather(*(client_loop(client, rec, stop, i, ids) for i in range(clients)))
        return rec, time.perf_counter() - start


def report(rec: Recorder, elapsed: float, clients: int) -> dict:
    rows = {}
    total = sum(len(v) for v in rec.latency.values())
    print(
        f"API load test: {clients} concurrent clients, {elapsed:.1f} s, loopback, 1 uvicorn worker"
    )
    print(f"{'request':<12}{'count':>8}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}{'errors':>8}")
    everything = []
    for kind in sorted(rec.latency):
        ms = np.asarray(rec.latency[kind]) * 1000
        everything.append(ms)
        p50, p95, p99 = np.percentile(ms, [50, 95, 99])
        rows[kind] = {"count": len(ms), "p50_ms": p50, "p95_ms": p95, "p99_ms": p99,
                      "errors": rec.errors.get(kind, 0)}  # fmt: skip
        errors = rec.errors.get(kind, 0)
        print(f"{kind:<12}{len(ms):>8}{p50:>10.1f}{p95:>10.1f}{p99:>10.1f}{errors:>8}")
    ms = np.concatenate(everything)
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    errors = sum(rec.errors.values())
    print(f"{'all':<12}{len(ms):>8}{p50:>10.1f}{p95:>10.1f}{p99:>10.1f}{errors:>8}")
    print(f"throughput {total / elapsed:.1f} requests/s; errors {errors}; "
          f"write conflicts (409, expected) {rec.conflicts}")  # fmt: skip
    if rec.samples:
        print(f"error samples: {rec.samples}")
    return {"clients": clients, "seconds": elapsed, "requests": total, "errors": errors,
            "conflicts_409": rec.conflicts, "throughput_rps": total / elapsed,
            "p50_ms": p50, "p95_ms": p95, "p99_ms": p99, "by_kind": rows}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        proc = start_server(port, Path(tmp) / "store.gpkg")
        try:
            rec, elapsed = asyncio.run(run(f"http://127.0.0.1:{port}", args.clients, args.seconds))
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    figures = report(rec, elapsed, args.clients)
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    return 0 if figures["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
