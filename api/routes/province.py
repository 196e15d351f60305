"""The province coverage job and its maps: ``POST /analysis/province``, ``/maps/province``.

The job hands a province run (:func:`geo_minzheng.province.run_province`) to Dask: the
scheduler of ``GEO_MINZHENG_DASK_SCHEDULER``, else a local cluster started for the job. Its
progress is the run's (per city network and per partition); its result is every county
(partition unit) with its coverage shares as GeoJSON, and the run's report. Each run is saved
as one GeoPackage in ``GEO_MINZHENG_PROVINCE_RESULTS`` (a ``postgresql://`` URL there writes one
PostGIS result table per run instead; the maps read GeoPackage runs). A run started again with
the same ``run_id`` resumes. The province comes from ``GEO_MINZHENG_PROVINCE_FILE``, else the
demo province (演示情景: the real Changchun data, the OSM extracts and synthetic cities) is
built on first use.

``/maps/province`` shows the latest run's counties coloured by coverage, each linking to its
county map (``/maps/province/{run_id}/{city}/{unit}``); before any run it offers to start one
and shows its progress.
"""

from __future__ import annotations

import html
import io
import json
import threading
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from api.auth import Viewer
from api.errors import ApiProblem
from api.jobs import Progress
from api.models import PROBLEM_RESPONSES, JobStatus, Link, ProblemDetail
from api.state import AppState, State
from geo_minzheng import params, province, workflows
from geo_minzheng.kinds import ELDERCARE_CATEGORIES

router = APIRouter(tags=["全省 / province"])

GEOJSON = "application/geo+json"
#: Synthetic cities of the demo province the service builds when no province file is set.
DEMO_SYNTHETIC_CITIES = 4
_BUILD_LOCK = threading.Lock()

RunId = Annotated[str, Path(pattern=r"^[a-z0-9_]{1,40}$", description="运行编号 / run ID")]
Code = Annotated[str, Path(pattern=r"^[0-9A-Za-z_]{1,16}$", description="区划代码 / code")]
Lang = Annotated[Literal["zh", "en"] | None, Query(description="界面语言 / language: zh or en")]

_TEXT = {
    "title": ("全省养老服务圈覆盖", "Province eldercare coverage"),
    "none": (
        "还没有全省分析结果。点击下方按钮开始（按区县分区，在 Dask 上计算；"
        "演示省份为演示情景数据）。",
        "No province run yet. Start one below (partitioned by county, run on Dask; the demo "
        "province is demo scenario data).",
    ),
    "start": ("开始全省分析", "Start the province run"),
    "home": ("首页", "Home"),
    "switch": ("English", "中文"),
    "kind": ("设施类别：", "Facility kind: "),
    "break": ("步行时间：", "Walking time: "),
    "csv": ("下载区县表 CSV", "County table CSV"),
    "xlsx": ("下载区县表 XLSX", "County table XLSX"),
    "back": ("返回全省地图", "Back to the province map"),
    "failed": ("分析失败：", "The run failed: "),
}


def _t(key: str, lang: str) -> str:
    zh, en = _TEXT[key]
    return zh if lang == "zh" else en


class ProvinceRequest(BaseModel):
    """A province coverage run (every county of every city, on Dask)."""

    model_config = ConfigDict(extra="forbid")

    breaks_min: list[float] = Field(
        default=list(params.DEFAULT_BREAKS_MIN),
        min_length=1,
        max_length=params.MAX_BREAKS,
        description=params.BREAKS_DESCRIPTION,
    )
    categories: list[Literal[tuple(ELDERCARE_CATEGORIES)]] | None = Field(  # type: ignore[valid-type]
        default=None,
        description="覆盖的养老设施类别（默认：居家养老服务中心与日间照料中心）/ eldercare "
        "categories covered (default the life circle's home-care and day-care centres)",
    )
    walk_speed_mps: float = Field(
        default=params.ELDERLY_WALK_SPEED_MPS,
        ge=params.MIN_WALK_SPEED_MPS,
        le=params.MAX_WALK_SPEED_MPS,
        description=params.WALK_SPEED_DESCRIPTION,
    )
    run_id: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9_]{1,40}$",
        description="运行编号；与已有运行相同时续跑，跳过已完成的分区 / run ID; the ID of an "
        "earlier run resumes it, skipping finished partitions",
    )

    def province_params(self) -> province.ProvinceParams:
        return province.ProvinceParams(
            breaks_min=tuple(self.breaks_min),
            categories=tuple(self.categories) if self.categories else params.LIFE_CIRCLE_CATEGORIES,
            walk_speed_mps=self.walk_speed_mps,
        )


# ------------------------------------------------------------------------------------------------
# Where the province and its runs are
# ------------------------------------------------------------------------------------------------


def _results(state: AppState) -> str:
    return str(state.settings.province_results)


def _results_dir(state: AppState) -> FilePath | None:
    text = _results(state)
    return None if text.startswith(("postgresql://", "postgres://")) else FilePath(text)


def _source(state: AppState, progress: Progress | None = None) -> province.ProvinceFile:
    """The configured province file, else the demo province (built once, under a lock)."""
    configured = state.settings.province_file
    if configured is not None:
        return province.ProvinceFile(FilePath(configured))
    folder = _results_dir(state) or FilePath(".")
    path = folder / "demo-province.gpkg"
    with _BUILD_LOCK:
        if not path.exists():
            if progress is not None:
                progress(0.0, "生成演示省份 / building the demo province")
            province.build_test_province(path, synthetic_cities=DEMO_SYNTHETIC_CITIES)
    return province.ProvinceFile(path)


def _runs(state: AppState) -> list[FilePath]:
    """Finished GeoPackage runs, newest first."""
    folder = _results_dir(state)
    if folder is None or not folder.is_dir():
        return []
    done = []
    for path in folder.glob("province-*.gpkg"):
        try:
            if "coverage_table" in set(pyogrio.list_layers(path)[:, 0]):
                done.append(path)
        except Exception:  # a run being written, or not a GeoPackage: not finished
            continue
    return sorted(done, key=lambda p: p.stat().st_mtime, reverse=True)


def _run_file(state: AppState, run_id: str | None) -> FilePath:
    runs = _runs(state)
    if run_id is None:
        if not runs:
            raise ApiProblem(404, "no finished province run yet: POST /analysis/province")
        return runs[0]
    for path in runs:
        if path.stem == f"province-{run_id}":
            return path
    raise ApiProblem(404, f"no finished province run '{run_id}'")


class _SavedRun:
    """A finished run read back from its GeoPackage: table, units, parameters."""

    def __init__(self, path: FilePath) -> None:
        self.path = path
        self.run_id = path.stem.removeprefix("province-")
        info = pyogrio.read_dataframe(path, layer="run_info", read_geometry=False)
        values = dict(zip(info["key"], info["value"], strict=True))
        self.params = json.loads(values.get("parameters", "{}"))
        self.source = values.get("source", "")
        self.table = pyogrio.read_dataframe(path, layer="coverage_table", read_geometry=False)
        self.units = pyogrio.read_dataframe(path, layer="unit_coverage")
        self.kinds = list(pd.unique(self.table["kind"]))
        self.breaks = sorted(float(b) for b in pd.unique(self.table["break_min"]))

    def county_layer(self, kind: str, break_min: float) -> gpd.GeoDataFrame:
        t = self.table[
            (self.table["kind"] == kind)
            & (self.table["break_min"] == break_min)
            & (self.table["unit"] != "total")
        ][["city", "unit", "share_population", "share_aged_60_plus"]]
        base = self.units[["city", "city_name", "adcode", "name", "level", "population",
                           "aged_60_plus", "geometry"]]  # fmt: skip
        base = base[base["population"].notna()]
        out = base.merge(t, left_on=["city", "adcode"], right_on=["city", "unit"], how="left")
        return gpd.GeoDataFrame(out.drop(columns="unit"), geometry="geometry", crs=4326)


# ------------------------------------------------------------------------------------------------
# The job
# ------------------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if value is None or value is pd.NA:
        return None
    return value if isinstance(value, str | int | float | bool) else str(value)


def _run_province(state: AppState, body: ProvinceRequest, progress: Progress) -> dict[str, Any]:
    source = _source(state, progress)
    settings = state.settings
    run = province.run_province(
        source,
        body.province_params(),
        out=_results(state),
        run_id=body.run_id,
        scheduler=settings.dask_scheduler,
        n_workers=settings.dask_workers,
        progress=progress,
    )
    province.check_complete(run)  # PartitionError (503) naming what failed; resumable
    units = run.unit_layer(source.units())
    features = []
    props = units.drop(columns="geometry")
    for row, geom in zip(props.to_dict(orient="records"), units.geometry, strict=True):
        features.append(
            {"type": "Feature", "properties": _jsonable(row), "geometry": geom.__geo_interface__}
        )
    return {
        "type": "FeatureCollection",
        "features": features,
        "run_id": run.run_id,
        "report": _jsonable({k: v for k, v in run.report().items() if k != "store"}),
        "links": [{"href": f"/maps/province?run={run.run_id}", "rel": "map"}],
    }


def _status(request: Request, job: Any) -> JobStatus:
    links = [Link(href=str(request.url_for("job", job_id=job.id)), rel="self",
                  type="application/json")]  # fmt: skip
    if job.status == "succeeded":
        links.append(
            Link(href=str(request.url_for("job_result", job_id=job.id)), rel="result", type=GEOJSON)
        )
    return JobStatus(
        id=job.id,
        kind=job.kind,
        status=job.status,
        progress=round(job.progress, 3),
        message=job.message,
        created=job.created,
        finished=job.finished,
        error=job.error,
        links=links,
    )


@router.post(
    "/analysis/province",
    status_code=202,
    response_model=JobStatus,
    responses={
        **PROBLEM_RESPONSES,
        409: {"model": ProblemDetail},
        422: {"model": ProblemDetail},
        503: {"model": ProblemDetail},
    },
    summary="全省养老服务圈覆盖 / province coverage on Dask (job)",
    description=(
        "Coverage of every county of every city of the province, partitioned by county (each "
        "with a buffer as wide as the largest break at the walking speed) and run on the Dask "
        "scheduler of `GEO_MINZHENG_DASK_SCHEDULER` (else a local cluster). The results equal "
        "the single-process city runs exactly. Returns 202 and a job to poll at `/jobs/{id}` "
        "(progress per partition); the result is every county as GeoJSON with its shares at "
        "the largest break per kind, `run_id` and `report` (partitions, failures retried, "
        "peak memory per worker). A failed partition is retried; one that fails every try "
        "fails the job (503), and the same `run_id` resumes it. One province run at a time: "
        "another submission while one runs gets 409."
    ),
)
def province_job(body: ProvinceRequest, request: Request, state: State, _: Viewer) -> JSONResponse:
    try:
        body.province_params()
        if body.run_id is not None:
            province.check_run_id(body.run_id)
    except ValueError as exc:
        raise ApiProblem(422, str(exc)) from None
    # one province run at a time per service process: it already uses every worker
    running = getattr(state, "_province_job", None)
    if running is not None and state.jobs.get(running).active:
        msg = f"a province run is already running: poll /jobs/{running}, then start another"
        raise ApiProblem(409, msg)
    job = state.jobs.submit("province", lambda p: _run_province(state, body, p))
    state._province_job = job.id  # type: ignore[attr-defined]
    status = _status(request, job)
    return JSONResponse(
        status.model_dump(exclude_none=True),
        status_code=202,
        headers={"Location": str(request.url_for("job", job_id=job.id))},
    )


# ------------------------------------------------------------------------------------------------
# Tables and maps
# ------------------------------------------------------------------------------------------------


def _lang(state: AppState, lang: str | None) -> str:
    return lang or state.settings.lang


def _basemap(state: AppState) -> list[Any]:
    from maps import basemaps

    settings = state.settings
    names = [settings.basemap, "none"] if settings.basemap != "none" else ["none"]
    try:
        return basemaps.resolve(
            names,
            tianditu_token=settings.resolved_tianditu_token(),
            tile_url=settings.intranet_tile_url,
        )
    except ValueError:  # 天地图 without a token, intranet without a URL: no base map
        return basemaps.resolve(["none"])


def _finish(m: Any, nav: str) -> str:
    from maps import assets

    assets.use_served_assets(m, base_url="/static/vendor")
    page = assets.map_figure(m).render()
    return page.replace("</body>", nav + "</body>", 1)


_PANEL = (
    "position:absolute;top:10px;left:50px;z-index:1000;background:rgba(255,255,255,.95);"
    "padding:6px 10px;border-radius:4px;box-shadow:0 1px 5px rgba(0,0,0,.4);"
    "font:13px/1.6 sans-serif;max-width:60%"
)


def _nav(lang: str, here: str, extra: str = "") -> str:
    other = "en" if lang == "zh" else "zh"
    sep = "&" if "?" in here else "?"
    return (
        f'<div id="gm-nav" style="{_PANEL}">'
        f'<a id="gm-home" href="/?lang={lang}">{_t("home", lang)}</a> · '
        f'<a id="lang-switch" href="{html.escape(here)}{sep}lang={other}">{_t("switch", lang)}</a>'
        f"{extra}</div>"
    )


def _page_cache(state: AppState) -> dict[tuple, str]:
    cache = getattr(state, "_province_pages", None)
    if cache is None:
        cache = {}
        state._province_pages = cache  # type: ignore[attr-defined]
    if len(cache) > 32:
        cache.clear()
    return cache


def _start_page(lang: str) -> str:
    """The page before any run: a button that starts the job and shows its progress."""
    title = html.escape(_t("title", lang))
    return f"""<!DOCTYPE html><html lang="{"zh-CN" if lang == "zh" else "en"}"><head>
<meta charset="utf-8"><title>{title}</title>
<style>body{{font:15px/1.6 "Microsoft YaHei","Noto Sans CJK SC",sans-serif;margin:40px}}
#gm-bar{{width:420px;height:14px;border:1px solid #888;margin:10px 0}}
#gm-fill{{height:100%;width:0;background:#1a9850}}</style></head><body>
<p><a id="gm-home" href="/?lang={lang}">{_t("home", lang)}</a></p>
<h1>{title}</h1><p id="gm-none">{html.escape(_t("none", lang))}</p>
<button id="gm-start" type="button">{html.escape(_t("start", lang))}</button>
<div id="gm-bar"><div id="gm-fill"></div></div><div id="gm-status"></div>
<script>
document.getElementById("gm-start").addEventListener("click", function() {{
  var status = document.getElementById("gm-status"), fill = document.getElementById("gm-fill");
  this.disabled = true;
  fetch("/analysis/province", {{method: "POST", headers: {{"Content-Type": "application/json"}},
    body: "{{}}"}}).then(function(r) {{ return r.json(); }}).then(function(job) {{
    var poll = function() {{
      fetch("/jobs/" + job.id).then(function(r) {{ return r.json(); }}).then(function(s) {{
        fill.style.width = Math.round(100 * s.progress) + "%";
        status.textContent = Math.round(100 * s.progress) + "% " + s.message;
        if (s.status === "succeeded") {{ location.reload(); }}
        else if (s.status === "failed") {{
          status.textContent = {json.dumps(_t("failed", lang))} + (s.error && s.error.detail);
        }} else {{ setTimeout(poll, 1000); }}
      }});
    }};
    poll();
  }});
}});
</script></body></html>"""


def _province_page(
    state: AppState, run: _SavedRun, lang: str, kind: str | None, break_min: float | None
) -> str:
    from maps import coverage_map, province_map

    kind = kind or (run.kinds[0] if run.kinds else "")
    if kind not in run.kinds:
        raise ApiProblem(404, f"unknown kind '{kind}'; expected one of: {', '.join(run.kinds)}")
    chosen = float(break_min) if break_min is not None else max(run.breaks)
    if chosen not in run.breaks:
        msg = (
            f"unknown break {chosen:g}; expected one of: {', '.join(f'{b:g}' for b in run.breaks)}"
        )
        raise ApiProblem(404, msg)
    base = f"/maps/province/{run.run_id}/{{city}}/{{unit}}?lang={lang}&kind={kind}"
    downloads = (
        f'<a id="gm-csv" href="/province/runs/{run.run_id}/units.csv?kind={kind}'
        f'&break_min={chosen:g}">{_t("csv", lang)}</a> · '
        f'<a id="gm-xlsx" href="/province/runs/{run.run_id}/units.xlsx?kind={kind}'
        f'&break_min={chosen:g}">{_t("xlsx", lang)}</a>'
    )
    m = province_map.province_map(
        run.county_layer(kind, chosen),
        kind=kind,
        break_min=chosen,
        lang=lang,
        basemap=_basemap(state),
        drill=province_map.drill_link(base),
        note=province_map.note_text(run.run_id, lang),
        downloads=downloads,
    )
    here = f"/maps/province?run={run.run_id}&kind={kind}&break_min={chosen:g}"
    kinds = " · ".join(
        f'<a class="gm-kind" href="/maps/province?run={run.run_id}&kind={k}&lang={lang}">'
        f"{html.escape(coverage_map.kind_label(k, lang))}</a>"
        for k in run.kinds
    )
    breaks = " · ".join(
        f'<a class="gm-break" href="/maps/province?run={run.run_id}&kind={kind}&break_min={b:g}'
        f'&lang={lang}">{b:g}</a>'
        for b in run.breaks
    )
    extra = f"<br>{_t('kind', lang)}{kinds}<br>{_t('break', lang)}{breaks}"
    return _finish(m, _nav(lang, here, extra))


@router.get(
    "/maps/province",
    response_class=HTMLResponse,
    responses={404: {"description": "unknown run, kind or break"}},
    summary="全省覆盖地图 / province coverage map",
    description="Every county of the latest (or `run`) province run coloured by the aged-60+ "
    "share within `break_min` of `kind`, each linking to its county map; a table of the "
    "counties (lowest first) with CSV/XLSX downloads. Before any run, a page that starts one.",
)
def province_map_page(
    state: State,
    _: Viewer,
    lang: Lang = None,
    run: Annotated[str | None, Query(pattern=r"^[a-z0-9_]{1,40}$")] = None,
    kind: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z_]+$")] = None,
    break_min: Annotated[float | None, Query(gt=0, le=params.MAX_BREAK_MIN)] = None,
) -> HTMLResponse:
    lang_ = _lang(state, lang)
    if run is None and not _runs(state):
        return HTMLResponse(_start_page(lang_))
    path = _run_file(state, run)
    key = ("province", str(path), path.stat().st_mtime, lang_, kind, break_min)
    cache = _page_cache(state)
    if key not in cache:
        cache[key] = _province_page(state, _SavedRun(path), lang_, kind, break_min)
    return HTMLResponse(cache[key])


def _county_page(
    state: AppState, run: _SavedRun, city: str, unit: str, lang: str, kind: str | None
) -> str:
    from maps import province_map

    kind = kind or (run.kinds[0] if run.kinds else "")
    if kind not in run.kinds:
        raise ApiProblem(404, f"unknown kind '{kind}'; expected one of: {', '.join(run.kinds)}")
    units = run.units[(run.units["city"] == city) & (run.units["adcode"].astype(str) == unit)]
    if not len(units):
        raise ApiProblem(404, f"no county '{unit}' of city '{city}' in run '{run.run_id}'")
    where = f"city = '{city}' AND unit = '{unit}'"  # both matched ^[0-9A-Za-z_]+$ (path rules)
    points = pyogrio.read_dataframe(run.path, layer="coverage_points", where=where)
    source = province.ProvinceFile(FilePath(run.source))
    layers = source.city_layers(city)
    facility_ids = workflows.default_facility_layers(layers)
    categories = run.params.get("categories")
    facilities = workflows.facility_sets(
        layers, facility_ids, categories=tuple(categories) if categories else None
    ).get(kind)
    if facilities is None:
        facilities = gpd.GeoDataFrame({"id": []}, geometry=[], crs=4326)
    else:
        minx, miny, maxx, maxy = units.total_bounds
        pad = 0.02  # degrees (~2 km): facilities just across the border serve the county too
        facilities = facilities.cx[minx - pad : maxx + pad, miny - pad : maxy + pad]
    m = province_map.county_map(
        points,
        units,
        facilities,
        kind=kind,
        breaks_min=run.breaks,
        lang=lang,
        basemap=_basemap(state),
        title=None,
    )
    back = f'<br><a id="gm-back" href="/maps/province?run={run.run_id}&kind={kind}&lang={lang}">'
    back += f"{_t('back', lang)}</a>"
    here = f"/maps/province/{run.run_id}/{city}/{unit}?kind={kind}"
    return _finish(m, _nav(lang, here, back))


@router.get(
    "/maps/province/{run_id}/{city}/{unit}",
    response_class=HTMLResponse,
    responses={404: {"description": "unknown run, county or kind"}},
    summary="区县覆盖地图 / a county's coverage map",
    description="One county of a province run: its demand points by walking time to the "
    "nearest facility of `kind`, those facilities and the county's boundary.",
)
def county_map_page(
    run_id: RunId,
    city: Code,
    unit: Code,
    state: State,
    _: Viewer,
    lang: Lang = None,
    kind: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z_]+$")] = None,
) -> HTMLResponse:
    lang_ = _lang(state, lang)
    path = _run_file(state, run_id)
    key = ("county", str(path), path.stat().st_mtime, city, unit, lang_, kind)
    cache = _page_cache(state)
    if key not in cache:
        cache[key] = _county_page(state, _SavedRun(path), city, unit, lang_, kind)
    return HTMLResponse(cache[key])


def _units_table(state: AppState, run_id: str, kind: str | None, break_min: float | None,
                 lang: str) -> pd.DataFrame:  # fmt: skip
    run = _SavedRun(_run_file(state, run_id))
    kind = kind or run.kinds[0]
    chosen = float(break_min) if break_min is not None else max(run.breaks)
    if kind not in run.kinds or chosen not in run.breaks:
        raise ApiProblem(404, f"unknown kind '{kind}' or break {chosen:g} in run '{run_id}'")
    t = pd.DataFrame(run.county_layer(kind, chosen).drop(columns="geometry"))
    t = t.sort_values(["city", "adcode"]).reset_index(drop=True)
    if lang == "zh":
        t = t.rename(
            columns={
                "city": "城市代码", "city_name": "城市", "adcode": "区县代码", "name": "区县",
                "level": "层级", "population": "常住人口", "aged_60_plus": "60岁及以上人口",
                "share_population": f"{chosen:g}分钟人口覆盖率",
                "share_aged_60_plus": f"{chosen:g}分钟老年人覆盖率",
            }
        )  # fmt: skip
    return t


@router.get(
    "/province/runs/{run_id}/units.csv",
    responses={404: {"model": ProblemDetail}},
    summary="区县覆盖表 CSV / county table (CSV)",
    description="The counties of a province run with their shares within `break_min` of `kind`.",
)
def units_csv(
    run_id: RunId,
    state: State,
    _: Viewer,
    lang: Lang = None,
    kind: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z_]+$")] = None,
    break_min: Annotated[float | None, Query(gt=0, le=params.MAX_BREAK_MIN)] = None,
) -> Response:
    table = _units_table(state, run_id, kind, break_min, _lang(state, lang))
    text = table.to_csv(index=False)
    return Response(
        "\ufeff" + text,  # a BOM, so that Excel opens the Chinese text as UTF-8
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="province-{run_id}-units.csv"'},
    )


@router.get(
    "/province/runs/{run_id}/units.xlsx",
    responses={404: {"model": ProblemDetail}},
    summary="区县覆盖表 XLSX / county table (XLSX)",
    description="The counties of a province run with their shares, as an Excel workbook.",
)
def units_xlsx(
    run_id: RunId,
    state: State,
    _: Viewer,
    lang: Lang = None,
    kind: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z_]+$")] = None,
    break_min: Annotated[float | None, Query(gt=0, le=params.MAX_BREAK_MIN)] = None,
) -> Response:
    table = _units_table(state, run_id, kind, break_min, _lang(state, lang))
    buffer = io.BytesIO()
    with pd.ExcelWriter(buffer) as writer:
        table.to_excel(writer, index=False, sheet_name="counties")
    return Response(
        buffer.getvalue(),
        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={"Content-Disposition": f'attachment; filename="province-{run_id}-units.xlsx"'},
    )
