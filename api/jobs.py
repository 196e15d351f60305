"""Long analyses as jobs: submit, poll progress, fetch the result; kept in the store.

Jobs run on a thread pool in the process that accepted them (the analyses release the GIL in
scipy/shapely), but their state and results live in the store's ``gm_jobs`` table
(:meth:`geo_minzheng.store.Store.add_job`), so every worker process of the service, and the
service after a restart, answers for every job. The queue is bounded across processes: with
``max_active`` jobs queued or running, a submission gets 429 with ``Retry-After``. While a job is
queued or running its process refreshes the job's heartbeat; a job whose process stopped (a
restart, a crash) is reported failed once its heartbeat is ``stale_after_s`` old, so a client
never waits for it forever.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import statistics
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from api.errors import ApiProblem, domain_problem, problem, unexpected_problem
from geo_minzheng._errors import GeoMinzhengError
from geo_minzheng.store import JobInfo, Store

log = logging.getLogger("geo_minzheng.api.jobs")

Progress = Callable[[float, str], None]
Task = Callable[[Progress], dict[str, Any]]
#: A job as the routes see it: the store's record (status, progress, message, times, error).
Job = JobInfo

#: Shortest gap between two progress writes of one job (the message changing always writes).
PROGRESS_WRITE_S = 0.5
#: Retry-After when this process has not finished a job yet (the demo coverage takes ~2 s).
DEFAULT_RETRY_AFTER_S = 10


def _age_s(stamp: str) -> float:
    """Seconds since the ISO 8601 time ``stamp``."""
    return (dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(stamp)).total_seconds()


def interrupted_problem() -> dict[str, Any]:
    """The error of a job whose worker process stopped before it finished."""
    return problem(
        503,
        "the job was interrupted: the server process running it stopped (a restart or a "
        "crash) before it finished; submit the analysis again",
    )


class JobManager:
    """Runs analysis tasks in the background; their state and results live in ``store``.

    Parameters
    ----------
    store
        The service's store (GeoPackage or PostGIS), shared by all its worker processes.
    workers
        Threads of this process that run jobs.
    max_active
        Most jobs queued or running at once in the whole service (every process); more: 429.
    keep
        Finished jobs kept in the store (older ones, with their results, are dropped).
    heartbeat_s, stale_after_s
        How often this process marks its jobs alive, and after how long without a heartbeat
        a queued or running job counts as lost.
    """

    def __init__(
        self,
        store: Store,
        *,
        workers: int = 2,
        max_active: int = 16,
        keep: int = 100,
        heartbeat_s: float = 5.0,
        stale_after_s: float = 60.0,
    ) -> None:
        self._store = store
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gm-job")
        self._workers = workers
        self.max_active = max_active
        self._keep = keep
        self._heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self._lock = threading.Lock()
        self._queued: set[str] = set()
        self._running: set[str] = set()
        self._durations_s: deque[float] = deque(maxlen=20)
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    # -- submitting ------------------------------------------------------------------------------
    def submit(self, kind: str, task: Task) -> Job:
        """Queue ``task`` (it receives a ``progress(fraction, message)`` callback).

        Raises ApiProblem 429 with a ``Retry-After`` header when the queue is full.
        """
        job_id = uuid.uuid4().hex
        queued = self._store.add_job(
            job_id,
            kind,
            max_active=self.max_active,
            stale_after_s=self.stale_after_s,
            keep=self._keep,
        )
        if not queued:
            wait_s = self.retry_after_s()
            msg = (
                f"{self.max_active} analysis job(s) already queued or running, the most this "
                f"service takes at once (GEO_MINZHENG_JOB_QUEUE_LIMIT); try again in {wait_s} s"
            )
            raise ApiProblem(429, msg, headers={"Retry-After": str(wait_s)})
        with self._lock:
            self._queued.add(job_id)
        self._start_heartbeat()
        self._pool.submit(self._run, job_id, task)
        return self._store.job(job_id)

    def retry_after_s(self) -> int:
        """Seconds a refused client should wait: the median time of this process's last jobs.

        One job finishing frees a place, so the typical job time is when to ask again.
        """
        with self._lock:
            durations = list(self._durations_s)
        if not durations:
            return DEFAULT_RETRY_AFTER_S
        return max(1, min(300, math.ceil(statistics.median(durations))))

    # -- reading ---------------------------------------------------------------------------------
    def get(self, job_id: str) -> Job:
        """The job ``job_id`` from the store (UnknownIdError when unknown or dropped).

        A queued or running job whose heartbeat is older than ``stale_after_s`` lost its
        process: it is recorded as failed (interrupted) and returned so.
        """
        job = self._store.job(job_id)
        if job.active and _age_s(job.heartbeat) > self.stale_after_s:
            self._store.fail_stale_jobs(
                stale_after_s=self.stale_after_s, error=interrupted_problem()
            )
            job = self._store.job(job_id)
        return job

    def result_json(self, job_id: str) -> str | None:
        """The JSON text of a succeeded job's result (None while it has none)."""
        return self._store.job_result(job_id)

    # -- running ---------------------------------------------------------------------------------
    def _run(self, job_id: str, task: Task) -> None:
        started = time.monotonic()
        with self._lock:
            self._queued.discard(job_id)
            self._running.add(job_id)
        last_at, last_message, last_fraction = 0.0, "", 0.0

        def progress(fraction: float, message: str) -> None:
            nonlocal last_at, last_message, last_fraction
            last_fraction = max(last_fraction, min(1.0, float(fraction)))
            now = time.monotonic()
            if message == last_message and now - last_at < PROGRESS_WRITE_S:
                return  # throttled: each write is a store transaction
            last_at, last_message = now, message
            self._write(job_id, progress=last_fraction, message=message)

        try:
            self._write(job_id, status="running")
            try:
                result = task(progress)
            except GeoMinzhengError as exc:
                _, body = domain_problem(exc)
                self._write(job_id, status="failed", error=body)
            except (ValueError, KeyError) as exc:
                self._write(job_id, status="failed", error=problem(422, str(exc)))
            except Exception as exc:
                log.exception("job %s failed", job_id)
                self._write(job_id, status="failed", error=unexpected_problem(exc))
            else:
                self._finish(job_id, result)
        finally:
            with self._lock:
                self._running.discard(job_id)
                self._durations_s.append(time.monotonic() - started)

    def _finish(self, job_id: str, result: dict[str, Any]) -> None:
        """Store the result as JSON text, which /jobs/{id}/result then sends as it is."""
        try:
            text = json.dumps(result, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError) as exc:  # a result that is not JSON: a bug, said so
            log.exception("job %s: result is not JSON", job_id)
            error = unexpected_problem(exc, what="writing the result")
            self._write(job_id, status="failed", error=error)
            return
        self._write(job_id, status="succeeded", progress=1.0, message="完成 / done", result=text)

    def _write(self, job_id: str, **values: Any) -> None:
        """Record a change of the job; a store failure is logged (the heartbeat then lapses)."""
        try:
            self._store.update_job(job_id, **values)
        except GeoMinzhengError:
            log.exception("could not record job %s in the store", job_id)

    # -- heartbeat -------------------------------------------------------------------------------
    def _start_heartbeat(self) -> None:
        with self._lock:
            if self._beat is not None:
                return
            self._beat = threading.Thread(target=self._heartbeat, name="gm-job-beat", daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self._heartbeat_s):
            with self._lock:
                mine = sorted(self._queued | self._running)
            if not mine:
                continue
            try:
                self._store.touch_jobs(mine)
            except GeoMinzhengError:
                log.exception("could not refresh the heartbeat of %d job(s)", len(mine))

    def shutdown(self, *, wait: bool = True) -> None:
        """Stop taking jobs: queued ones fail as interrupted; running ones finish when ``wait``.

        The service calls it before closing the store, so a running job still records its
        result (a stopped service then answers for it after the restart).
        """
        self._pool.shutdown(wait=False, cancel_futures=True)  # nothing queued starts now
        with self._lock:
            queued, self._queued = sorted(self._queued), set()
        for job_id in queued:
            self._write(job_id, status="failed", error=interrupted_problem())
        self._pool.shutdown(wait=wait)
        self._stop.set()
