"""A small in-process job manager for long analyses: submit, poll progress, fetch the result.

Jobs run on a thread pool (the analyses release the GIL in scipy/shapely); their state lives in
memory, so a restart forgets them, which is fine for analyses that can simply be re-run.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from api.errors import domain_problem, problem
from geo_minzheng._errors import GeoMinzhengError, UnknownIdError

log = logging.getLogger("geo_minzheng.api.jobs")

Progress = Callable[[float, str], None]
Task = Callable[[Progress], dict[str, Any]]


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


@dataclass
class Job:
    """One analysis run: status, progress in [0, 1], a message, and the result or the error."""

    id: str
    kind: str
    status: str = "queued"  # queued | running | succeeded | failed
    progress: float = 0.0
    message: str = ""
    created: str = field(default_factory=_now)
    finished: str | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class JobManager:
    """Runs tasks in the background and keeps the last ``keep`` jobs."""

    def __init__(self, *, workers: int = 2, keep: int = 200) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gm-job")
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._keep = keep

    def submit(self, kind: str, task: Task) -> Job:
        """Queue ``task``; it receives a ``progress(fraction, message)`` callback."""
        job = Job(uuid.uuid4().hex, kind)
        with self._lock:
            self._jobs[job.id] = job
            self._evict()
        self._pool.submit(self._run, job, task)
        return job

    def _evict(self) -> None:
        finished = [j.id for j in self._jobs.values() if j.status in ("succeeded", "failed")]
        while len(self._jobs) > self._keep and finished:
            self._jobs.pop(finished.pop(0), None)

    def _run(self, job: Job, task: Task) -> None:
        def progress(fraction: float, message: str) -> None:
            with self._lock:
                job.progress = max(job.progress, min(1.0, float(fraction)))
                job.message = message

        with self._lock:
            job.status = "running"
        try:
            result = task(progress)
        except GeoMinzhengError as exc:
            status, body = domain_problem(exc)
            self._finish(job, "failed", error=body)
        except (ValueError, KeyError) as exc:
            self._finish(job, "failed", error=problem(422, str(exc)))
        except Exception:
            log.exception("job %s (%s) failed", job.id, job.kind)
            self._finish(job, "failed", error=problem(500, "the analysis failed unexpectedly"))
        else:
            self._finish(job, "succeeded", result=result)

    def _finish(
        self,
        job: Job,
        status: str,
        *,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        with self._lock:
            job.status, job.result, job.error = status, result, error
            job.finished = _now()
            if status == "succeeded":
                job.progress, job.message = 1.0, "完成 / done"

    def get(self, job_id: str) -> Job:
        """The job ``job_id`` (UnknownIdError when unknown or forgotten)."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            msg = f"unknown job '{job_id}' (jobs are kept in memory until the server restarts)"
            raise UnknownIdError(msg)
        return job

    def shutdown(self) -> None:
        """Stop accepting jobs; running ones are abandoned at process exit."""
        self._pool.shutdown(wait=False, cancel_futures=True)
