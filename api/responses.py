"""What every analysis route answers with: JSON-safe values, GeoJSON, job status and 202.

One home for the response glue, so that each analysis router (coverage, siting, shelters,
relief, boundaries, province) is its request model, its runner and its route.
"""

from __future__ import annotations

import math
from typing import Any, Literal, cast

import geopandas as gpd
import pandas as pd
from fastapi import Request
from fastapi.responses import JSONResponse

from api.jobs import Job, Task
from api.models import JobStatus, Link
from api.state import AppState
from geo_minzheng.store import VERSION_COLUMN

GEOJSON = "application/geo+json"
JobState = Literal["queued", "running", "succeeded", "failed"]


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars as Python ones, non-finite floats and NA as None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "item"):
        value = value.item()
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if isinstance(value, str | int | float | bool) else str(value)


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A table as JSON-safe records."""
    return [jsonable(r) for r in frame.to_dict(orient="records")]


def geojson(gdf: gpd.GeoDataFrame) -> dict[str, Any]:
    """A GeoDataFrame as a WGS84 GeoJSON FeatureCollection with JSON-safe properties."""
    data = gdf.to_crs(4326) if gdf.crs is not None and gdf.crs.to_epsg() != 4326 else gdf
    props = pd.DataFrame(data.drop(columns=[data.geometry.name, VERSION_COLUMN], errors="ignore"))
    features = [
        {
            "type": "Feature",
            "properties": {k: jsonable(v) for k, v in row.items()},
            "geometry": None if geom is None else geom.__geo_interface__,
        }
        for row, geom in zip(props.to_dict(orient="records"), data.geometry, strict=True)
    ]
    return {"type": "FeatureCollection", "features": features}


def job_status(request: Request, job: Job) -> JobStatus:
    """The job's status with its self link and, once it succeeded, its result link."""
    self_href = str(request.url_for("job", job_id=job.id))
    links = [Link(href=self_href, rel="self", type="application/json")]
    if job.status == "succeeded":
        href = str(request.url_for("job_result", job_id=job.id))
        links.append(Link(href=href, rel="result", type=GEOJSON))
    return JobStatus(
        id=job.id,
        kind=job.kind,
        status=cast(JobState, job.status),
        progress=round(job.progress, 3),
        message=job.message,
        created=job.created,
        finished=job.finished,
        error=job.error,
        links=links,
    )


def submit(request: Request, state: AppState, kind: str, task: Task) -> JSONResponse:
    """Queue ``task`` as a job of ``kind``: 202 with its status and a Location to poll."""
    job = state.jobs.submit(kind, task)
    return JSONResponse(
        job_status(request, job).model_dump(exclude_none=True),
        status_code=202,
        headers={"Location": str(request.url_for("job", job_id=job.id))},
    )
