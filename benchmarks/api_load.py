"""Load test of the API on loopback: item pages and analysis calls, measured separately.

Run: ``nice .venv/bin/python benchmarks/api_load.py [--seconds 15] [--workers N]``.

Starts ``geo-minzheng serve`` (by default one worker process per CPU, as a bureau would run it)
on the demo catalog with a fresh GeoPackage store, in its own process group, and drives it from
this process (the load generator runs on the same machine, sharing its CPUs). The generator is a
small asyncio HTTP/1.1 client over keep-alive connections, so that its own cost per request
stays well below the server's. Each scenario runs for ``--seconds`` after a one-second warm-up
and prints p50/p95 latency, requests per second and errors:

* ``item pages``: closed-loop clients each reading 10-item pages of the demand layer
  (``/collections/demand/items?limit=10&offset=...``), with 10 and with 50 clients;
* the same 10 readers while 20 other clients send requests with a wrong ``X-API-Key``
  (answered 401, or 429 once failed attempts are rate-limited; either is expected);
* ``analysis calls``: clients asking for isochrones of demand points (answered at once), and
  clients running coverage jobs end to end (submit, poll, fetch the result; a 429 from the
  bounded job queue is expected and counted).

Then the goals of issue 15 are checked, each on one line. The exit code is 1 when any request
failed (a status other than the expected ones, or a transport error).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PAGE_SIZE = 10
WRONG_KEY = "gm_0badc0de_" + "x" * 43  # well-formed, but no such key


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, store: Path, workers: int | None) -> subprocess.Popen:
    """``geo-minzheng serve`` in its own process group, configured like a deployment."""
    env = dict(
        os.environ,
        GEO_MINZHENG_STORE_URL=f"gpkg://{store}",
        GEO_MINZHENG_BASEMAP="none",
        PYTHONPATH=str(ROOT),
    )
    cmd = [sys.executable, "-m", "geo_minzheng.cli", "serve", "--host", "127.0.0.1",
           "--port", str(port)]  # fmt: skip
    if workers is not None:
        cmd += ["--workers", str(workers)]
    log = open(store.with_suffix(".log"), "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(cmd, env=env, cwd=store.parent, stdout=log, stderr=log,
                            start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api", timeout=2) as answer:
                if answer.status == 200:
                    return proc
        except OSError:
            time.sleep(0.3)
    stop_server(proc)
    msg = f"the API server did not start; its log: {store.with_suffix('.log')}"
    raise RuntimeError(msg)


def stop_server(proc: subprocess.Popen) -> None:
    """SIGINT to the server's process group (uvicorn's parent and its workers), then wait."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


# ------------------------------------------------------------------------------------------------
# A minimal HTTP/1.1 keep-alive client (what the generator spends per request is what it steals
# from the server on a shared machine; httpx costs several times more)
# ------------------------------------------------------------------------------------------------


class Connection:
    """One keep-alive connection to the server; reopened after a transport error."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, *, headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            status = int(status_line.split()[1])
            answer = {}
            for line in header_lines:
                if ":" in line:
                    name, value = line.split(":", 1)
                    answer[name.strip().lower()] = value.strip()
            if "content-length" in answer:
                data = await self.reader.readexactly(int(answer["content-length"]))
            elif answer.get("transfer-encoding", "").lower() == "chunked":
                data = await self._chunked()
            else:
                data = await self.reader.read()
            if answer.get("connection", "").lower() == "close":
                self.close()
            return status, answer, data
        except (OSError, asyncio.IncompleteReadError, ValueError):
            self.close()
            raise

    async def _chunked(self) -> bytes:
        assert self.reader is not None
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


# ------------------------------------------------------------------------------------------------
# Scenarios
# ------------------------------------------------------------------------------------------------


@dataclass
class Series:
    """Latencies (s) and outcomes of one kind of request in one scenario."""

    name: str
    expected: tuple[int, ...]
    latency_s: list[float] = field(default_factory=list)
    errors: int = 0
    refused: int = 0  # 429 from a bounded queue or a rate limit, when expected
    samples: list[str] = field(default_factory=list)

    def add(self, seconds: float, status: int | None, detail: str = "") -> None:
        self.latency_s.append(seconds)
        if status == 429 and 429 in self.expected:
            self.refused += 1
        elif status not in self.expected:
            self.errors += 1
            if len(self.samples) < 3:
                self.samples.append(f"{status} {detail[:120]}")


Client = Callable[[Connection, random.Random, Series, Callable[[], bool]], Awaitable[None]]


async def _timed(series: Series, call: Awaitable[tuple[int, dict, bytes]]) -> tuple | None:
    start = time.perf_counter()
    try:
        status, headers, body = await call
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        series.add(time.perf_counter() - start, None, f"{type(exc).__name__}: {exc}")
        return None
    series.add(time.perf_counter() - start, status, body[:200].decode("utf-8", "replace"))
    return status, headers, body


def page_reader(n_demand: int) -> Client:
    async def loop(conn: Connection, rng: random.Random, series: Series, more) -> None:
        while more():
            offset = rng.randrange(0, max(1, n_demand - PAGE_SIZE), PAGE_SIZE)
            path = f"/collections/demand/items?limit={PAGE_SIZE}&offset={offset}"
            await _timed(series, conn.request("GET", path))

    return loop


async def wrong_key_sender(conn: Connection, rng: random.Random, series: Series, more) -> None:
    while more():
        headers = {"X-API-Key": WRONG_KEY[:-6] + f"{rng.randrange(10**6):06d}"}
        path = f"/collections/markers/items?limit={PAGE_SIZE}"
        await _timed(series, conn.request("GET", path, headers=headers))


def isochrone_client(points: list[tuple[float, float]]) -> Client:
    async def loop(conn: Connection, rng: random.Random, series: Series, more) -> None:
        while more():
            lon, lat = rng.choice(points)
            body = json.dumps({"lon": lon, "lat": lat, "breaks_min": [5, 10, 15]}).encode()
            await _timed(series, conn.request("POST", "/analysis/isochrone", body=body))

    return loop


async def coverage_client(conn: Connection, rng: random.Random, series: Series, more) -> None:
    """Submit a coverage job, poll it, fetch its result; the latency is the whole job."""
    body = json.dumps({"breaks_min": [5, 10, 15], "new_sites": 0}).encode()
    while more():
        start = time.perf_counter()
        try:
            status, headers, data = await conn.request("POST", "/analysis/coverage", body=body)
            if status == 429:
                series.add(time.perf_counter() - start, status)
                await asyncio.sleep(float(headers.get("retry-after", "1")))
                continue
            if status != 202:
                series.add(time.perf_counter() - start, status, data[:200].decode())
                continue
            job = json.loads(data)["id"]
            while True:
                await asyncio.sleep(0.2)
                status, _, data = await conn.request("GET", f"/jobs/{job}")
                state = json.loads(data).get("status") if status == 200 else None
                if state not in ("queued", "running"):
                    break
            status, _, data = await conn.request("GET", f"/jobs/{job}/result")
            series.add(time.perf_counter() - start, status, data[:200].decode("utf-8", "replace"))
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            series.add(time.perf_counter() - start, None, f"{type(exc).__name__}: {exc}")


@dataclass
class Scenario:
    name: str
    groups: list[tuple[Series, Client, int]]  # (what it records, client loop, how many clients)


async def run_scenario(port: int, scenario: Scenario, seconds: float) -> float:
    """Run every group's clients together; a 1 s warm-up is not recorded. Elapsed seconds."""
    conns = [[Connection(port) for _ in range(n)] for _, _, n in scenario.groups]
    warm_until = time.perf_counter() + 1.0
    stop_at = warm_until + seconds
    scratch = [Series(s.name, s.expected) for s, _, _ in scenario.groups]

    async def one(index: int, series: Series, client: Client, conn: Connection, seed: int):
        rng = random.Random(seed)
        await client(conn, rng, scratch[index], lambda: time.perf_counter() < warm_until)
        await client(conn, rng, series, lambda: time.perf_counter() < stop_at)
        conn.close()

    tasks = [
        one(i, series, client, conn, 1000 * i + j)
        for i, (series, client, _) in enumerate(scenario.groups)
        for j, conn in enumerate(conns[i])
    ]
    start = time.perf_counter()
    await asyncio.gather(*tasks)
    return time.perf_counter() - max(start, warm_until)


def figures(series: Series, elapsed_s: float, clients: int) -> dict:
    ms = np.asarray(series.latency_s) * 1000 if series.latency_s else np.asarray([np.nan])
    p50, p95 = (float(v) for v in np.percentile(ms, [50, 95]))
    return {"clients": clients, "requests": len(series.latency_s), "p50_ms": p50, "p95_ms": p95,
            "requests_per_s": len(series.latency_s) / elapsed_s, "errors": series.errors,
            "refused_429": series.refused, "error_samples": series.samples}  # fmt: skip


def _line(label: str, f: dict) -> str:
    refused = f", {f['refused_429']} refused (429)" if f["refused_429"] else ""
    return (
        f"{label:<58} p50 {f['p50_ms']:7.1f} ms  p95 {f['p95_ms']:7.1f} ms  "
        f"{f['requests_per_s']:7.1f} requests/s  {f['errors']} errors{refused}"
    )


async def _fixtures(port: int) -> tuple[int, list[tuple[float, float]]]:
    """The demand layer's size and points; waits until the workers have built their networks."""
    conn = Connection(port)
    _, _, data = await conn.request("GET", "/collections/demand/items?limit=1000")
    page = json.loads(data)
    points = [tuple(f["geometry"]["coordinates"][:2]) for f in page["features"]]
    conn.close()

    async def isochrone(lon: float, lat: float) -> None:
        one = Connection(port)  # a new connection: the kernel spreads them over the workers
        body = json.dumps({"lon": lon, "lat": lat}).encode()
        await one.request("POST", "/analysis/isochrone", body=body)
        one.close()

    # each worker builds its walk network at start; an isochrone waits for it
    for _ in range(3):
        await asyncio.gather(*(isochrone(*point) for point in points[:16]))
    return int(page["numberMatched"]), points


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="per scenario")
    parser.add_argument("--workers", type=int, default=None,
                        help="server worker processes (default: serve's, one per CPU)")  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--only", default="", help="run only scenarios whose title contains this")
    args = parser.parse_args()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        proc = start_server(port, Path(tmp) / "store.gpkg", args.workers)
        try:
            n_demand, points = asyncio.run(_fixtures(port))
            pages = page_reader(n_demand)
            plan = [
                ("item pages, 10 clients", [("pages", (200,), pages, 10)]),
                ("item pages, 50 clients", [("pages", (200,), pages, 50)]),
                ("item pages, 10 clients while 20 other clients send wrong keys",
                 [("pages", (200,), pages, 10), ("wrong keys", (401, 429), wrong_key_sender, 20)]),
                ("analysis calls: isochrones, 4 clients",
                 [("isochrones", (200,), isochrone_client(points), 4)]),
                ("analysis calls: coverage jobs end to end, 2 clients",
                 [("coverage jobs", (200, 429), coverage_client, 2)]),
            ]  # fmt: skip
            workers = args.workers if args.workers is not None else "one per CPU"
            print(f"API load test on loopback: geo-minzheng serve (worker processes: {workers}; "
                  f"{os.cpu_count()} CPUs shared with the load generator), "
                  f"{args.seconds:.0f} s per scenario; load average before: "
                  f"{os.getloadavg()[0]:.2f}")  # fmt: skip
            for title, groups in [(t, g) for t, g in plan if args.only in t]:
                scenario = Scenario(
                    title,
                    [
                        (Series(name, expected), client, n) for name, expected, client, n in groups
                    ],  # fmt: skip
                )
                elapsed = asyncio.run(run_scenario(port, scenario, args.seconds))
                for series, _, n in scenario.groups:
                    key = title if series.name in ("pages", "isochrones", "coverage jobs") else (
                        f"{title} [{series.name}]")  # fmt: skip
                    results[key] = figures(series, elapsed, n)
                    print(_line(key, results[key]))
                    for sample in series.samples:
                        print(f"    error sample: {sample}")
        finally:
            stop_server(proc)
    print(f"load average after: {os.getloadavg()[0]:.2f} (other work on the machine skews latency)")
    print()
    for text in check_goals(results):
        print(text)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0 if all(r["errors"] == 0 for r in results.values()) else 1


def check_goals(results: dict[str, dict]) -> list[str]:
    """The goals of issue 15, in its words, each with the measured figures and met / NOT met."""
    p10 = results.get("item pages, 10 clients")
    p50 = results.get("item pages, 50 clients")
    keyed = results.get("item pages, 10 clients while 20 other clients send wrong keys")
    if p10 is None or p50 is None or keyed is None:
        return ["goals: not checked (run every item-page scenario)"]

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    return [
        f"goal: 10 concurrent clients reading 10-item pages, p95 < 50 ms: "
        f"p95 {p10['p95_ms']:.1f} ms -> {verdict(p10['p95_ms'] < 50)}",
        f"goal: 50 clients, 0 errors and no lower throughput than 10: {p50['errors']} errors, "
        f"{p50['requests_per_s']:.0f} vs {p10['requests_per_s']:.0f} requests/s -> "
        f"{verdict(p50['errors'] == 0 and p50['requests_per_s'] >= p10['requests_per_s'])}",
        f"goal: reads keep that p95 while 20 other clients send wrong keys: "
        f"p95 {keyed['p95_ms']:.1f} ms -> {verdict(keyed['p95_ms'] < 50)}",
    ]


if __name__ == "__main__":
    sys.exit(main())
