"""Province and nation: the coverage workflow over many cities at once, partitioned, on Dask.

A provincial department asks the city bureau's questions for every county at once. The work
splits by admin unit: each **partition** is one unit (a county or district) of one city, with
every demand point of that unit (each point belongs to exactly one partition: its own unit, or
the nearest unit when it lies in none) and the facilities within a buffer of the unit. The
buffer is a network-distance bound: no trip within the largest break covers more than the
break times the fastest speed of the network (``breaks x walking speed`` on a walk network),
so a resident near a border still reaches a facility across it, and every facility that any of
the unit's residents reaches within the largest break is in the partition. A partition's
shortest-path search starts from those facilities and stops at the largest break, so it never
leaves the buffer either. Each partition runs the same core as a city run
(:func:`geo_minzheng.coverage.analyze`) on its city's network; the stitched tables and
per-point times equal the single-process run of :func:`geo_minzheng.workflows.run_coverage`
exactly (tests/test_province.py):

* the partitions of a city share its network's engine, so every point snaps to the same place
  and every tie breaks the same way as in the single run, and a facility outside the buffer
  cannot be the nearest (nor tie with it) for anyone in the unit;
* per-unit counts are sums of whole people, so adding the partitions' counts gives exactly the
  single run's counts, and the shares are recomputed from them as the core does;
* street length per unit and the "almost no road data" flags need the whole city network and
  are computed once per city (:func:`geo_minzheng.coverage.road_km_per_unit`).

The engine is Dask's distributed scheduler: ``scheduler=ADDRESS`` sends the work to a running
cluster, otherwise a local cluster with one worker process per CPU runs inside the command.
Each city's network is built once on a worker (``plan_city``) and its partitions run where it
lives; a failed task is retried (``ProvinceParams.retries``) and every failure is reported; a
worker that dies is replaced by its nanny and Dask recomputes what it held. Progress is reported
per partition. Results go to one GeoPackage per run (:class:`GpkgRunStore`) or to PostGIS
(:class:`PostgisRunStore`: one result table per run, with its parameters); each finished
partition is saved at once, so a run started again with the same ``run_id`` resumes without
redoing finished partitions.

The test province (:func:`build_test_province`) puts the real networks of the project
(Changchun's roads with the demo scenario, the OSM extracts of Beijing, Shenzhen and Guixi) and
seeded synthetic grid cities side by side as separate cities, each with its own admin units; its
facilities, population and synthetic boundaries are a labelled demo scenario.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import math
import os
import re
import socket
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from pyproj import CRS, Transformer

from geo_minzheng import coverage, params, workflows
from geo_minzheng import crs as gm_crs
from geo_minzheng._errors import PartitionError, StoreError, UnknownIdError
from geo_minzheng.admin_units import unit_membership
from geo_minzheng.engine import Engine, id_strings
from geo_minzheng.kinds import DEMO_SCENARIO_LABEL

if TYPE_CHECKING:
    from distributed import Client

#: Layers of one city in a province file (``c<city code>_<name>``) and their kinds.
PROVINCE_LAYERS: dict[str, str] = {
    "roads": "road",
    "demand": "demand",
    "eldercare": "eldercare_center",
    "service_rooms": "community_service_room",
    "units": "admin_unit",
}
#: Attribute table of a province file listing its cities.
CITIES_TABLE = "province_cities"
#: Tries after the first one for a failed city or partition task.
DEFAULT_RETRIES = 2
MAX_RETRIES = 10
#: Metres added to the reach bound (a guard against rounding at the bound, nothing more).
REACH_MARGIN_M = 1.0
#: Seed of the test province's demo scenario.
DEFAULT_SEED = 20261124
#: Census shares of the demo scenario (Jilin province, 7th national census 2020), as the demo's.
AGED_60_SHARE = 0.2306
HOUSEHOLD_SIZE = 2.34

#: zh / en messages of a run (progress and reports).
_TEXT = {
    "start": "启动 Dask / starting Dask",
    "dashboard": "Dask 仪表板 / dashboard: {link}",
    "no_dashboard": "Dask 仪表板不可用（未安装 bokeh）/ no Dask dashboard (bokeh not installed)",
    "resume": "续跑：{done} 个分区已完成，跳过 / resuming: {done} partitions already done",
    "city": "城市 {done}/{total} 路网就绪 / city networks ready",
    "part": "分区 {done}/{total} 完成 / partitions done",
    "failed": "失败 {n} 次（已重试）/ {n} failures (retried)",
    "stitch": "拼接结果 / stitching the results",
    "save": "写入结果 / writing the results",
    "done": "完成 / done",
}


def _no_progress(fraction: float, message: str) -> None:
    """Progress sink for runs nobody watches."""


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProvinceParams:
    """Parameters of a province coverage run; defaults and checks come from :mod:`params`.

    The per-partition analysis is the coverage workflow's (``coverage_params``): time breaks,
    the eldercare categories covered (default the 15-minute life circle's community centres,
    ``params.LIFE_CIRCLE_CATEGORIES``, so every city has the same kinds) and the snapping
    distance; new sites and the compliance table are left to the city runs. ``retries``: how
    many times a failed city or partition task is tried again.
    """

    breaks_min: tuple[float, ...] = params.DEFAULT_BREAKS_MIN
    categories: tuple[str, ...] | None = params.LIFE_CIRCLE_CATEGORIES
    max_snap_m: float = params.DEFAULT_MAX_SNAP_M
    profile: params.Profile = params.DEFAULT_PROFILE
    walk_speed_mps: float = params.ELDERLY_WALK_SPEED_MPS
    retries: int = DEFAULT_RETRIES

    def __post_init__(self) -> None:
        object.__setattr__(self, "breaks_min", params.check_breaks_min(self.breaks_min))
        object.__setattr__(self, "walk_speed_mps", params.check_walk_speed_mps(self.walk_speed_mps))
        params.check_profile(self.profile)
        if self.categories is not None:
            object.__setattr__(self, "categories", tuple(self.categories))
        self.coverage_params()  # the categories' check
        if isinstance(self.retries, bool) or not 0 <= int(self.retries) <= MAX_RETRIES:
            msg = f"retries must be a whole number in [0, {MAX_RETRIES}], got {self.retries!r}"
            raise ValueError(msg)
        if not math.isfinite(float(self.max_snap_m)) or float(self.max_snap_m) <= 0:
            msg = f"max_snap_m must be metres > 0, got {self.max_snap_m!r}"
            raise ValueError(msg)

    def coverage_params(self) -> workflows.CoverageParams:
        """The coverage workflow's parameters for one city (no siting, no compliance)."""
        return workflows.CoverageParams(
            breaks_min=self.breaks_min,
            categories=self.categories,
            new_sites=0,
            compliance=False,
            max_snap_m=self.max_snap_m,
        )

    def network_params(self) -> workflows.NetworkParams:
        return workflows.NetworkParams(profile=self.profile, walk_speed_mps=self.walk_speed_mps)

    def as_dict(self) -> dict[str, Any]:
        """The parameters as JSON values (stored with every run; a resume must match them)."""
        return {
            "breaks_min": list(self.breaks_min),
            "categories": list(self.categories) if self.categories is not None else None,
            "max_snap_m": float(self.max_snap_m),
            "profile": self.profile,
            "walk_speed_mps": float(self.walk_speed_mps),
        }


# --------------------------------------------------------------------------------------------
# Province files: many cities' layers in one GeoPackage
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class City:
    """One city of a province: its code (the layers' prefix), name and where its roads are from."""

    code: str
    name: str
    roads_source: str = ""
    #: Its facilities and population (and any synthetic boundaries) are demo scenario data.
    scenario: bool = True


def layer_name(code: str, layer: str) -> str:
    """The GeoPackage layer of ``layer`` (a :data:`PROVINCE_LAYERS` key) of city ``code``."""
    return f"c{code}_{layer}"


@dataclass(frozen=True)
class ProvinceFile:
    """A province as one GeoPackage: per city the layers of :data:`PROVINCE_LAYERS`, named
    ``c<code>_<layer>``, and the :data:`CITIES_TABLE` listing the cities. Workers read their
    city's layers from it, so its path must be readable by every worker (a shared folder on a
    cluster)."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    def cities(self) -> list[City]:
        """The cities, in file order."""
        if CITIES_TABLE not in self.layer_names():
            msg = (
                f"{self.path.name} is not a province file: it has no '{CITIES_TABLE}' table "
                "(write one with province.write_province or build_test_province)"
            )
            raise ValueError(msg)
        with contextlib.closing(sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)) as db:
            rows = db.execute(
                f'SELECT code, name, roads_source, scenario FROM "{CITIES_TABLE}" ORDER BY fid'
            ).fetchall()
        return [City(str(c), str(n), str(r or ""), bool(sc)) for c, n, r, sc in rows]

    def layer_names(self) -> set[str]:
        """The file's layers (read from its gpkg_contents: GDAL's listing opens every layer)."""
        if not self.path.is_file():
            msg = f"province file not found: {self.path}"
            raise FileNotFoundError(msg)
        try:
            with contextlib.closing(sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)) as db:
                return {r[0] for r in db.execute("SELECT table_name FROM gpkg_contents")}
        except sqlite3.DatabaseError:
            msg = f"{self.path.name} is not a GeoPackage (a province file is one)"
            raise ValueError(msg) from None

    def city(self, code: str) -> City:
        for c in self.cities():
            if c.code == str(code):
                return c
        known = ", ".join(c.code for c in self.cities())
        msg = f"unknown city '{code}' in {self.path.name}; known: {known}"
        raise UnknownIdError(msg)

    def read(self, code: str, layer: str) -> gpd.GeoDataFrame:
        """One layer of one city (attrs name its kind, layer and whether it is scenario data)."""
        gdf = pyogrio.read_dataframe(self.path, layer=layer_name(code, layer))
        gdf.attrs = {
            "kind": PROVINCE_LAYERS[layer],
            "layer": layer,
            "scenario": bool(
                "source" in gdf.columns and (gdf["source"] == DEMO_SCENARIO_LABEL).any()
            ),
        }
        return gdf

    def city_layers(self, code: str) -> workflows.FrameLayers:
        """The city's layers as the workflows read them (those the file holds)."""
        present = self.layer_names()
        return workflows.FrameLayers(
            {
                layer: self.read(code, layer)
                for layer in PROVINCE_LAYERS
                if layer_name(code, layer) in present
            }
        )

    def units(self) -> gpd.GeoDataFrame:
        """Every city's admin units (WGS84) with a ``city`` column: the partitions' polygons."""
        from geo_minzheng.store import gpkg_wkb

        # one SQLite read of every city's small unit table (GDAL opens a many-layer file slowly)
        rows: list[tuple[Any, ...]] = []
        with contextlib.closing(sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)) as db:
            for c in self.cities():
                table = layer_name(c.code, "units")
                found = db.execute(
                    f'SELECT adcode, name, level, geom FROM "{table}" ORDER BY fid'
                ).fetchall()
                rows += [(c.code, c.name, *r) for r in found]
        geoms = shapely.from_wkb([gpkg_wkb(r[5]) for r in rows]) if rows else []
        frame = pd.DataFrame(
            [r[:5] for r in rows], columns=["city", "city_name", "adcode", "name", "level"]
        )
        frame["adcode"] = frame["adcode"].astype(str)
        return gpd.GeoDataFrame(frame, geometry=np.asarray(geoms, dtype=object), crs=4326)


def write_province(
    path: str | Path, cities: Sequence[tuple[City, Mapping[str, gpd.GeoDataFrame]]]
) -> ProvinceFile:
    """Write cities' layers (keys of :data:`PROVINCE_LAYERS`) as one province GeoPackage.

    The file is replaced whole (written to a temporary file first).
    """
    from geo_minzheng import io as gm_io

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.gpkg")
    tmp.unlink(missing_ok=True)
    table = pd.DataFrame(
        {
            "code": [c.code for c, _ in cities],
            "name": [c.name for c, _ in cities],
            "roads_source": [c.roads_source for c, _ in cities],
            "scenario": [bool(c.scenario) for c, _ in cities],
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pyogrio.write_dataframe(table, tmp, layer=CITIES_TABLE, driver="GPKG")
    for city, layers in cities:
        unknown = sorted(set(layers) - set(PROVINCE_LAYERS))
        if unknown:
            msg = f"city {city.code}: unknown layers {unknown}; expected {list(PROVINCE_LAYERS)}"
            raise ValueError(msg)
        gm_io.write_gpkg({layer_name(city.code, k): v for k, v in layers.items()}, tmp)
    tmp.replace(path)
    return ProvinceFile(path)


def city_province(path: str | Path, frames: Mapping[str, gpd.GeoDataFrame]) -> ProvinceFile:
    """One city's layers (e.g. a catalog's ``read_all``) as a one-city province file: the first
    layer of each kind of :data:`PROVINCE_LAYERS`. The city's code is its units' parent code."""
    layers = workflows.FrameLayers(frames)
    picked = {}
    for name, kind in PROVINCE_LAYERS.items():
        layer_id = workflows.first_of_kind(layers, kind)
        if layer_id is not None:
            picked[name] = layers.read(layer_id)
    code = "000000"
    units = picked.get("units")
    if units is not None and "parent_adcode" in units.columns:
        parents = units["parent_adcode"].dropna().astype(str)
        code = parents.iloc[0] if len(parents) else code
    scenario = any(bool(g.attrs.get("scenario")) for g in picked.values())
    return write_province(path, [(City(code, code, "", scenario), picked)])


# --------------------------------------------------------------------------------------------
# The test province: real networks and synthetic cities, with a seeded demo scenario
# --------------------------------------------------------------------------------------------

#: The OSM extracts of tests/data/osm used as cities: file stem -> (district code, city name,
#: district name). The two Beijing extracts overlap, so only the larger one is a city.
OSM_CITIES: dict[str, tuple[str, str, str]] = {
    "beijing_haidian_tsinghua_wudaokou": ("110108", "北京市", "海淀区"),
    "shenzhen_longgang_dayun": ("440307", "深圳市", "龙岗区"),
    "guixi_jiangxi_center": ("360681", "贵溪市", "贵溪市"),
}
CHANGCHUN_CODE = "220100"
OSM_SOURCE = "© OpenStreetMap contributors, ODbL 1.0"
#: Synthetic cities sit on a grid of these steps (degrees) from this corner, all in Jilin's
#: longitudes so that their Gauss-Kruger zones are the demo's.
_SYNTH_ORIGIN = (122.2, 41.6)
_SYNTH_STEP = (1.1, 0.45)
_SYNTH_PER_ROW = 8


def _repository_osm_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "tests" / "data" / "osm"


def build_test_province(
    path: str | Path,
    *,
    synthetic_cities: int = 2,
    grid_n: int = 30,
    spacing_m: float = 100.0,
    demand_per_city: int = 2_000,
    counties: tuple[int, int] = (2, 2),
    real: bool = True,
    osm_dir: str | Path | None = None,
    seed: int = DEFAULT_SEED,
) -> ProvinceFile:
    """Write the test province: real street networks and synthetic grid cities, each a city of
    its own with its own admin units, and a seeded demo scenario of demand and facilities.

    Parameters
    ----------
    path
        The province GeoPackage to write.
    synthetic_cities
        Synthetic grid cities (``grid_n`` x ``grid_n`` street crossings ``spacing_m`` apart,
        jittered, ``counties`` rows x columns of districts each; ``2 * 2 * grid_n * (grid_n -
        1)`` directed edges on a walk network).
    demand_per_city
        Demand points of each synthetic and OSM city (Changchun keeps the demo's).
    real
        Include Changchun (the demo's real roads, districts and scenario) and the OSM extracts
        of :data:`OSM_CITIES` (real roads; two demo districts each, halves of the extract).
    osm_dir
        Folder of the OSM extracts (default the repository's tests/data/osm; skipped when absent).
    seed
        Seed of the one random generator; the same seed gives the same province.
    """
    rng = np.random.default_rng(seed)
    cities: list[tuple[City, dict[str, gpd.GeoDataFrame]]] = []
    if real:
        cities.append(_changchun())
        folder = Path(osm_dir) if osm_dir is not None else _repository_osm_dir()
        for stem, (code, city_name, district) in OSM_CITIES.items():
            file = folder / f"{stem}.osm"
            if file.is_file():
                cities.append(
                    _osm_city(rng, file, code, city_name, district, demand_per_city=demand_per_city)
                )
    for k in range(synthetic_cities):
        cities.append(
            _grid_city(
                rng,
                k,
                grid_n=grid_n,
                spacing_m=spacing_m,
                demand=demand_per_city,
                counties=counties,
            )
        )
    return write_province(path, cities)


def _changchun() -> tuple[City, dict[str, gpd.GeoDataFrame]]:
    """The demo city: real roads and districts, the demo scenario's demand and facilities."""
    from geo_minzheng import resources, scenario

    gpkg = resources.demo_data_dir() / scenario.DEMO_GPKG_NAME
    names = {"units": "districts", "roads": "roads", "demand": "demand"}
    names |= {"eldercare": "eldercare", "service_rooms": "service_rooms"}
    layers = {k: pyogrio.read_dataframe(gpkg, layer=v) for k, v in names.items()}
    return City(CHANGCHUN_CODE, "长春市", scenario.ROADS_SOURCE, True), layers


def _osm_roads(file: Path) -> gpd.GeoDataFrame:
    """The highway ways of an OSM XML file as a road layer (ways meet at shared nodes)."""
    import osmnx as ox

    ways = ox.features_from_xml(file, tags={"highway": True})
    ways = ways[ways.geom_type.isin(["LineString", "MultiLineString"])]
    ways = ways.explode(index_parts=False)
    ways = ways[ways.geom_type == "LineString"]

    def column(name: str) -> pd.Series:
        values = ways[name] if name in ways.columns else pd.Series(None, index=ways.index)
        return values.map(lambda v: v[0] if isinstance(v, list) else v)

    ids = [f"{kind}/{osm_id}" for kind, osm_id in ways.index]
    out = gpd.GeoDataFrame(
        {
            "id": [f"{i}-{n}" for n, i in enumerate(ids)],
            "name": column("name").astype(object).where(column("name").notna(), None),
            "fclass": column("highway").astype(str).to_numpy(),
            "oneway": column("oneway").fillna("no").astype(str).to_numpy(),
            "maxspeed": pd.to_numeric(column("maxspeed"), errors="coerce").to_numpy(),
            "bridge": (column("bridge") == "yes").to_numpy(),
            "tunnel": (column("tunnel") == "yes").to_numpy(),
            "source": OSM_SOURCE,
        },
        geometry=np.asarray(ways.geometry.values),
        crs=4326,
    )
    out.attrs = {"kind": "road", "layer": "roads"}
    return out


def _osm_city(
    rng: np.random.Generator,
    file: Path,
    code: str,
    city_name: str,
    district: str,
    *,
    demand_per_city: int,
) -> tuple[City, dict[str, gpd.GeoDataFrame]]:
    """A city on a real OSM extract: two demo districts (halves of the extract), seeded demand
    and facilities along its streets."""
    roads = _osm_roads(file)
    minx, miny, maxx, maxy = roads.total_bounds
    work = gm_crs.working_crs((minx + maxx) / 2, (miny + maxy) / 2)
    roads_w = roads.to_crs(work)
    x0, y0, x1, y1 = roads_w.total_bounds
    pad = 500.0
    if x1 - x0 >= y1 - y0:
        mid = (x0 + x1) / 2
        boxes = [(x0 - pad, y0 - pad, mid, y1 + pad), (mid, y0 - pad, x1 + pad, y1 + pad)]
    else:
        mid = (y0 + y1) / 2
        boxes = [(x0 - pad, y0 - pad, x1 + pad, mid), (x0 - pad, mid, x1 + pad, y1 + pad)]
    units = gpd.GeoDataFrame(
        {
            "adcode": [f"{code}{k:03d}" for k in (901, 902)],
            "name": [f"{district}演示片区{k}" for k in ("一", "二")],
            "level": "street",
            "parent_adcode": code,
            "source": DEMO_SCENARIO_LABEL,
        },
        geometry=[shapely.box(*b) for b in boxes],
        crs=work,
    )
    city = City(code, f"{city_name}{district}", f"{OSM_SOURCE} ({file.name})", True)
    return city, _scenario_layers(rng, code, roads_w, units, demand=demand_per_city) | {
        "roads": roads
    }


def _grid_city(
    rng: np.random.Generator,
    k: int,
    *,
    grid_n: int,
    spacing_m: float,
    demand: int,
    counties: tuple[int, int],
) -> tuple[City, dict[str, gpd.GeoDataFrame]]:
    """A synthetic city: a jittered street grid (one line per row and column, meeting at shared
    vertices), ``counties`` districts, seeded demand and facilities."""
    code = f"99{k + 1:02d}00"
    lon = _SYNTH_ORIGIN[0] + (k % _SYNTH_PER_ROW) * _SYNTH_STEP[0]
    lat = _SYNTH_ORIGIN[1] + (k // _SYNTH_PER_ROW) * _SYNTH_STEP[1]
    work = gm_crs.working_crs(lon, lat)
    cx, cy = Transformer.from_crs(4326, work, always_xy=True).transform(lon, lat)
    size = (grid_n - 1) * spacing_m
    # jitter (±15 % of a block) keeps equal-cost ties away, as on real streets
    gx, gy = np.meshgrid(np.arange(grid_n) * spacing_m, np.arange(grid_n) * spacing_m)
    jitter = rng.uniform(-0.15, 0.15, (2, grid_n, grid_n)) * spacing_m
    x = cx - size / 2 + gx + jitter[0]
    y = cy - size / 2 + gy + jitter[1]
    lon_g, lat_g = Transformer.from_crs(work, 4326, always_xy=True).transform(x, y)
    lines = [np.column_stack([lon_g[i], lat_g[i]]) for i in range(grid_n)]
    lines += [np.column_stack([lon_g[:, j], lat_g[:, j]]) for j in range(grid_n)]
    fclass = ["secondary" if i % 8 == 0 else "residential" for i in range(grid_n)] * 2
    roads = gpd.GeoDataFrame(
        {
            "id": [f"{code}-R{i:04d}" for i in range(len(lines))],
            "name": [
                f"演示{i % grid_n + 1}{'路' if i < grid_n else '街'}" for i in range(len(lines))
            ],
            "fclass": fclass,
            "oneway": "B",
            "maxspeed": np.nan,
            "bridge": False,
            "tunnel": False,
            "source": DEMO_SCENARIO_LABEL,
        },
        geometry=shapely.linestrings(lines),
        crs=4326,
    )
    rows, cols = counties
    pad = spacing_m
    xs = np.linspace(cx - size / 2 - pad, cx + size / 2 + pad, cols + 1)
    ys = np.linspace(cy - size / 2 - pad, cy + size / 2 + pad, rows + 1)
    boxes = [
        shapely.box(xs[j], ys[i], xs[j + 1], ys[i + 1]) for i in range(rows) for j in range(cols)
    ]
    units = gpd.GeoDataFrame(
        {
            "adcode": [f"99{k + 1:02d}{n + 1:02d}" for n in range(len(boxes))],
            "name": [f"演示市{k + 1}第{n + 1}区" for n in range(len(boxes))],
            "level": "district",
            "parent_adcode": code,
            "source": DEMO_SCENARIO_LABEL,
        },
        geometry=boxes,
        crs=work,
    )
    city = City(code, f"演示市{k + 1}", DEMO_SCENARIO_LABEL, True)
    layers = _scenario_layers(rng, code, roads.to_crs(work), units, demand=demand)
    return city, layers | {"roads": roads}


def _along(
    rng: np.random.Generator, lines: np.ndarray, n: int, offset_m: tuple[float, float]
) -> np.ndarray:
    """``n`` points uniformly along ``lines`` (by length), set back ``offset_m`` to either side."""
    lengths = shapely.length(lines)
    ends = np.cumsum(lengths)
    u = rng.uniform(0.0, ends[-1], n)
    idx = np.minimum(np.searchsorted(ends, u, side="right"), len(lines) - 1)
    at = u - (ends[idx] - lengths[idx])
    here = shapely.get_coordinates(shapely.line_interpolate_point(lines[idx], at))
    ahead = shapely.get_coordinates(
        shapely.line_interpolate_point(lines[idx], np.minimum(at + 1.0, lengths[idx]))
    )
    behind = shapely.get_coordinates(
        shapely.line_interpolate_point(lines[idx], np.maximum(at - 1.0, 0.0))
    )
    tangent = ahead - behind
    norm = np.maximum(np.hypot(tangent[:, 0], tangent[:, 1]), 1e-9)
    normal = np.column_stack([-tangent[:, 1], tangent[:, 0]]) / norm[:, None]
    side = rng.choice(np.array([-1.0, 1.0]), n) * rng.uniform(*offset_m, n)
    return here + normal * side[:, None]


def _scenario_layers(
    rng: np.random.Generator,
    code: str,
    roads_w: gpd.GeoDataFrame,
    units_w: gpd.GeoDataFrame,
    *,
    demand: int,
) -> dict[str, gpd.GeoDataFrame]:
    """Seeded demand points, eldercare centres and community service rooms along the streets
    (working CRS in, WGS84 out), like the demo scenario's (docs/scenario.md): population by
    Gamma(2) weights, aged 60+ by a Beta-binomial draw around the census share."""
    walkable = roads_w[~roads_w["fclass"].isin(["motorway", "motorway_link", "trunk"])]
    lines = np.asarray(walkable.geometry.values)
    lines = lines[shapely.length(lines) > 1.0]
    units_geom = np.asarray(units_w.geometry.values)
    unit_codes = units_w["adcode"].astype(str).to_numpy()

    def unit_of(xy: np.ndarray) -> np.ndarray:
        out = np.full(len(xy), None, dtype=object)
        for c, g in zip(unit_codes, units_geom, strict=True):
            out[(out == None) & shapely.contains_xy(g, xy[:, 0], xy[:, 1])] = c  # noqa: E711
        return out

    xy = _along(rng, lines, demand, (15.0, 40.0))
    weights = rng.gamma(2.0, 1.0, demand)
    population = rng.multinomial(demand * 35, weights / weights.sum())
    share = rng.beta(AGED_60_SHARE * 60, (1 - AGED_60_SHARE) * 60, demand)
    aged = rng.binomial(population, share)
    work = units_w.crs
    layers: dict[str, gpd.GeoDataFrame] = {}
    layers["demand"] = gpd.GeoDataFrame(
        {
            "id": [f"{code}-DM-{i:06d}" for i in range(1, demand + 1)],
            "population": population.astype(np.int64),
            "aged_60_plus": aged.astype(np.int64),
            "households": np.rint(population / HOUSEHOLD_SIZE).astype(np.int64),
            "admin_code": unit_of(xy),
            "source": DEMO_SCENARIO_LABEL,
        },
        geometry=shapely.points(xy),
        crs=work,
    )
    area_km2 = float(shapely.area(shapely.union_all(units_geom))) / 1e6
    counts = {
        "home_care_center": max(3, round(area_km2 * 0.3)),
        "day_care_center": max(3, round(area_km2 * 0.4)),
    }
    categories = [c for c, n in counts.items() for _ in range(n)]
    fxy = _along(rng, lines, len(categories), (10.0, 30.0))
    status = rng.choice(
        np.array(["open", "planned", "closed"]), len(categories), p=[0.9, 0.05, 0.05]
    )
    layers["eldercare"] = gpd.GeoDataFrame(
        {
            "id": [f"{code}-EC-{i:04d}" for i in range(1, len(categories) + 1)],
            "name": [f"演示养老设施{i}号" for i in range(1, len(categories) + 1)],
            "category": categories,
            "beds": rng.integers(0, 40, len(categories)),
            "floor_area_m2": np.round(rng.uniform(200.0, 1500.0, len(categories)), 1),
            "status": status,
            "admin_code": unit_of(fxy),
            "source": DEMO_SCENARIO_LABEL,
        },
        geometry=shapely.points(fxy),
        crs=work,
    )
    n_rooms = max(3, round(float(population.sum()) / 8_000.0))
    rxy = _along(rng, lines, n_rooms, (8.0, 20.0))
    layers["service_rooms"] = gpd.GeoDataFrame(
        {
            "id": [f"{code}-SR-{i:04d}" for i in range(1, n_rooms + 1)],
            "name": [f"演示社区综合服务站{i}号" for i in range(1, n_rooms + 1)],
            "floor_area_m2": np.round(rng.uniform(80.0, 900.0, n_rooms), 1),
            "status": rng.choice(
                np.array(["open", "planned", "closed"]), n_rooms, p=[0.9, 0.05, 0.05]
            ),
            "admin_code": unit_of(rxy),
            "source": DEMO_SCENARIO_LABEL,
        },
        geometry=shapely.points(rxy),
        crs=work,
    )
    layers["units"] = units_w
    return {name: gdf.to_crs(4326) for name, gdf in layers.items()}


# --------------------------------------------------------------------------------------------
# Planning a city: its network, its partitions and what needs the whole network
# --------------------------------------------------------------------------------------------


@dataclass
class PartitionSpec:
    """One partition: its demand rows and, per kind, the facilities within reach of them."""

    unit: str
    name: str
    rows: np.ndarray
    facilities: dict[str, np.ndarray]


@dataclass
class CitySummary:
    """What the coordinator keeps of a planned city (small; stored with the run for resumes).

    ``road_km`` and ``sparse_roads`` are per unit code and ``total`` (None without unit
    polygons); ``facilities_too_far`` lists facilities farther than the snapping distance from
    every street of the city (layer, id, distance_m).
    """

    city: City
    partitions: dict[str, str]
    n_demand: int
    n_edges: int
    reach_m: float
    road_km: pd.Series | None
    sparse_roads: pd.Series | None
    facilities_too_far: pd.DataFrame
    seconds: float

    def to_bytes(self) -> bytes:
        arrays: dict[str, np.ndarray] = {
            "meta": np.array(
                json.dumps(
                    {
                        "city": self.city.__dict__,
                        "partitions": self.partitions,
                        "n_demand": self.n_demand,
                        "n_edges": self.n_edges,
                        "reach_m": self.reach_m,
                        "seconds": self.seconds,
                        "roads": self.road_km is not None,
                    }
                )
            ),
            "far_layer": _str_array(self.facilities_too_far["layer"]),
            "far_id": _str_array(self.facilities_too_far["id"]),
            "far_m": self.facilities_too_far["distance_m"].to_numpy(dtype=float),
        }
        if self.road_km is not None and self.sparse_roads is not None:
            arrays["road_unit"] = _str_array(self.road_km.index)
            arrays["road_km"] = self.road_km.to_numpy(dtype=float)
            arrays["sparse_unit"] = _str_array(self.sparse_roads.index)
            arrays["sparse"] = self.sparse_roads.to_numpy(dtype=bool)
        return _npz_bytes(arrays)

    @classmethod
    def from_bytes(cls, data: bytes) -> CitySummary:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            road = sparse = None
            if meta["roads"]:
                road = pd.Series(z["road_km"], index=z["road_unit"].astype(object))
                sparse = pd.Series(z["sparse"], index=z["sparse_unit"].astype(object))
            far = pd.DataFrame(
                {
                    "layer": z["far_layer"].astype(object),
                    "id": z["far_id"].astype(object),
                    "distance_m": z["far_m"],
                }
            )
        return cls(
            City(**meta["city"]),
            dict(meta["partitions"]),
            int(meta["n_demand"]),
            int(meta["n_edges"]),
            float(meta["reach_m"]),
            road,
            sparse,
            far,
            float(meta["seconds"]),
        )


@dataclass
class CityPlan:
    """A city ready for its partitions: the whole network's engine and the layers, on a worker."""

    summary: CitySummary
    engine: Engine
    demand: gpd.GeoDataFrame
    facilities: dict[str, gpd.GeoDataFrame]
    units: gpd.GeoDataFrame | None
    specs: dict[str, PartitionSpec]


def reach_m(engine: Engine, cutoff_s: float) -> float:
    """The farthest straight-line distance any trip within ``cutoff_s`` can cover, metres.

    Every trip's cost is at least its length (access legs included) divided by the network's
    fastest edge speed, and a straight line is never longer than a street: so ``cutoff_s``
    times that speed bounds how far apart a resident and a facility within the cutoff can be.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        speed = engine.length_m / engine.cost
    finite = speed[np.isfinite(speed)]
    fastest = float(finite.max()) if len(finite) else 0.0
    return float(cutoff_s) * fastest * (1.0 + 1e-9) + REACH_MARGIN_M


def _engine_points(gdf: gpd.GeoDataFrame, crs: CRS) -> np.ndarray:
    """Where the engine snaps each record from: the point, or a polygon's point on surface.

    Point layers (the bulk) are transformed as coordinate arrays, as the engine does; the
    partitioning only needs them to the metre (the reach bound has its margin).
    """
    geoms = np.asarray(gdf.geometry.values)
    single = shapely.get_num_coordinates(geoms) == 1
    if len(geoms) and single.all() and gdf.crs is not None:
        xy = shapely.get_coordinates(geoms)
        x, y = gm_crs.point_transform(CRS(gdf.crs).srs, crs.srs, fast=True)(xy[:, 0], xy[:, 1])
        return shapely.points(x, y)
    return shapely.point_on_surface(np.asarray(gdf.to_crs(crs).geometry.values))


def plan_city(
    source: ProvinceFile, code: str, p: ProvinceParams, *, buffer_m: float | None = None
) -> CityPlan:
    """Build a city's network (the coverage workflow's own, so costs are the same) and cut the
    city into partitions: one per admin unit with demand, with the facilities in reach.

    Runs on a worker; the plan stays there and the city's partitions run next to it.
    ``buffer_m`` replaces the reach bound (:func:`reach_m`) as the buffer: only to show what a
    too narrow buffer does (tests).
    """
    started = time.perf_counter()
    city = source.city(code)
    layers = source.city_layers(code)
    cov = p.coverage_params()
    engine = workflows.engine_for(workflows.road_network(layers, p.network_params()))
    demand = workflows.demand_layer(layers, cov.demand_layer)
    facility_ids = cov.facility_layers or workflows.default_facility_layers(layers)
    if not facility_ids:
        msg = f"city {code}: no facility layers and no eldercare or service-room layer"
        raise ValueError(msg)
    facilities = workflows.facility_sets(layers, facility_ids, categories=cov.categories)
    units = workflows.units_layer(layers, cov.units_layer)
    cutoff_s = params.minutes_to_s(max(cov.breaks_min))
    reach = reach_m(engine, cutoff_s) if buffer_m is None else float(buffer_m)

    pts = _engine_points(demand, engine.crs)
    key, names, regions = _assign_units(demand, units, pts, engine.crs)
    fac_pts = {k: np.asarray(f.to_crs(engine.crs).geometry.values) for k, f in facilities.items()}
    fac_trees = {k: shapely.STRtree(g) for k, g in fac_pts.items()}
    specs: dict[str, PartitionSpec] = {}
    for unit in pd.unique(key):
        rows = np.flatnonzero(key == unit)
        region = _region(regions.get(unit), pts[rows])
        picked = {
            k: np.sort(tree.query(region, predicate="dwithin", distance=reach))
            for k, tree in fac_trees.items()
        }
        specs[str(unit)] = PartitionSpec(str(unit), names.get(unit, str(unit)), rows, picked)

    road_km = sparse = None
    if units is not None and units.crs is not None and len(units):
        road_km, sparse = _road_data(engine, units)
    far = []
    for kind, gdf in facilities.items():
        if len(gdf):
            snapped = engine.snap(gdf, id_field="id", max_snap_m=p.max_snap_m)
            if len(snapped.too_far):
                far.append(snapped.too_far.assign(layer=kind))
    too_far = (
        pd.concat(far, ignore_index=True)[["layer", "id", "distance_m"]]
        if far
        else pd.DataFrame({"layer": [], "id": [], "distance_m": []})
    )
    summary = CitySummary(
        city,
        {u: s.name for u, s in specs.items()},
        len(demand),
        len(engine.u),
        reach,
        road_km,
        sparse,
        too_far,
        time.perf_counter() - started,
    )
    return CityPlan(summary, engine, demand, facilities, units, specs)


def plan_summary(plan: CityPlan) -> CitySummary:
    """The small part of a plan that the coordinator fetches."""
    return plan.summary


def _assign_units(
    demand: gpd.GeoDataFrame, units: gpd.GeoDataFrame | None, pts: np.ndarray, crs: CRS
) -> tuple[np.ndarray, dict[str, str], dict[str, shapely.Geometry]]:
    """Each demand row's partition key (its most detailed unit's code; the nearest unit when it
    is in none), the units' names, and each unit's polygon in the engine's CRS."""
    n = len(demand)
    rows, members, info = unit_membership(demand, units)
    key = np.full(n, "", dtype=object)
    names = {str(c): str(nm) for c, nm in zip(info["adcode"], info["name"], strict=True)}
    regions: dict[str, shapely.Geometry] = {}
    if len(info):
        finest = coverage.finest_units(rows, members, info["level"].tolist(), n)
        codes = info["adcode"].astype(str).to_numpy(dtype=object)
        key[finest >= 0] = codes[finest[finest >= 0]]
        if units is not None and len(units):
            polys = np.asarray(units.to_crs(crs).geometry.values)
            for code in pd.unique(codes):
                regions[str(code)] = shapely.union_all(polys[codes == code])
            lost = np.flatnonzero(finest < 0)
            if len(lost):
                _, nearest = shapely.STRtree(polys).query_nearest(pts[lost], all_matches=False)
                key[lost] = codes[nearest]
    key[key == ""] = "none"  # no units at all, or codes naming no unit: one partition
    return key, names, regions


def _region(polygon: shapely.Geometry | None, pts: np.ndarray) -> shapely.Geometry:
    """The unit's polygon and those of its demand points that lie outside it."""
    if polygon is None:
        return shapely.union_all(pts)
    xy = shapely.get_coordinates(pts)
    outside = ~shapely.contains_xy(polygon, xy[:, 0], xy[:, 1])
    if not outside.any():
        return polygon
    return shapely.union_all(np.concatenate([[polygon], pts[outside]]))


def _road_data(engine: Engine, units: gpd.GeoDataFrame) -> tuple[pd.Series, pd.Series]:
    """Street km and the almost-no-road-data flag per unit code and ``total``, on the whole
    city network (as :func:`geo_minzheng.coverage.analyze` computes them)."""
    _, _, info = unit_membership(units.iloc[:0], units)
    km, area = coverage.road_km_per_unit(engine, units.reset_index(drop=True))
    flags = coverage.sparse_road_units(km, area, info["level"].tolist())
    codes = info["adcode"].astype(str).to_numpy()
    total = float(shapely.length(engine.arrays.segment_geometry).sum()) / 1e3
    road_km = pd.Series(np.r_[km, total], index=[*codes, coverage.TOTAL])
    sparse = pd.Series(np.r_[flags, False], index=[*codes, coverage.TOTAL])
    return road_km.groupby(level=0).sum(), sparse.groupby(level=0).any()


# --------------------------------------------------------------------------------------------
# One partition
# --------------------------------------------------------------------------------------------

#: Columns of a partition's share of the coverage table: counts only (shares are recomputed).
_KEYS = ["kind", "unit", "unit_name", "level", "break_min"]
_COUNTS = ["population", "aged_60_plus", "covered_population", "covered_aged_60_plus"]


@dataclass
class PartitionResult:
    """A partition's results: per demand row (positions in the city's demand layer) the
    nearest facility and minutes per kind, its counts per unit, and how the run went."""

    city: str
    unit: str
    rows: np.ndarray
    ids: np.ndarray
    times_min: dict[str, np.ndarray]
    nearest: dict[str, np.ndarray]
    table: pd.DataFrame
    demand_too_far: pd.DataFrame
    n_facilities: int
    seconds: float
    worker: str
    attempt: int
    #: Each point's WGS84 position (the interior point of a polygon), population and aged 60+
    lon: np.ndarray = field(default_factory=lambda: np.zeros(0))
    lat: np.ndarray = field(default_factory=lambda: np.zeros(0))
    population: np.ndarray = field(default_factory=lambda: np.zeros(0))
    aged_60_plus: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def kinds(self) -> list[str]:
        return list(self.times_min)

    def to_bytes(self) -> bytes:
        arrays: dict[str, np.ndarray] = {
            "meta": np.array(
                json.dumps(
                    {
                        "city": self.city,
                        "unit": self.unit,
                        "kinds": self.kinds,
                        "n_facilities": self.n_facilities,
                        "seconds": self.seconds,
                        "worker": self.worker,
                        "attempt": self.attempt,
                    }
                )
            ),
            "rows": self.rows.astype(np.int64),
            "ids": _str_array(self.ids),
            "far_id": _str_array(self.demand_too_far["id"]),
            "far_m": self.demand_too_far["distance_m"].to_numpy(dtype=float),
            "lon": self.lon,
            "lat": self.lat,
            "population": self.population,
            "aged_60_plus": self.aged_60_plus,
        }
        for i, kind in enumerate(self.kinds):
            near = self.nearest[kind]
            arrays[f"t{i}"] = self.times_min[kind]
            arrays[f"n{i}"] = _str_array(np.where(pd.isna(near), "", near))
            arrays[f"m{i}"] = pd.isna(near).astype(bool)
        for col in _KEYS:
            values = self.table[col]
            if col == "break_min":
                arrays["table_break_min"] = values.to_numpy(dtype=float)
            else:
                arrays[f"table_{col}"] = _str_array(values.where(values.notna(), ""))
                arrays[f"table_{col}_na"] = values.isna().to_numpy(dtype=bool)
        for col in _COUNTS:
            arrays[f"table_{col}"] = self.table[col].to_numpy(dtype=np.int64)
        return _npz_bytes(arrays)

    @classmethod
    def from_bytes(cls, data: bytes) -> PartitionResult:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            times, nearest = {}, {}
            for i, kind in enumerate(meta["kinds"]):
                times[kind] = z[f"t{i}"]
                near = z[f"n{i}"].astype(object)
                near[z[f"m{i}"]] = None
                nearest[kind] = near
            table: dict[str, Any] = {}
            for col in _KEYS:
                if col == "break_min":
                    table[col] = z["table_break_min"]
                else:
                    values = z[f"table_{col}"].astype(object)
                    values[z[f"table_{col}_na"]] = np.nan
                    table[col] = values
            for col in _COUNTS:
                table[col] = z[f"table_{col}"]
            far = pd.DataFrame({"id": z["far_id"].astype(object), "distance_m": z["far_m"]})
            return cls(
                meta["city"],
                meta["unit"],
                z["rows"],
                z["ids"].astype(object),
                times,
                nearest,
                pd.DataFrame(table),
                far,
                int(meta["n_facilities"]),
                float(meta["seconds"]),
                str(meta["worker"]),
                int(meta["attempt"]),
                z["lon"],
                z["lat"],
                z["population"],
                z["aged_60_plus"],
            )


def run_partition(
    plan: CityPlan,
    unit: str,
    p: ProvinceParams,
    attempt: int = 0,
    before: Callable[[str, str, int], None] | None = None,
) -> PartitionResult:
    """Coverage of one partition on its city's network (runs on a worker, next to its plan).

    ``before(city, unit, attempt)`` is called first (per-partition logging, fault injection).
    """
    started = time.perf_counter()
    code = plan.summary.city.code
    if before is not None:
        before(code, unit, attempt)
    spec = plan.specs[unit]
    engine = plan.engine
    demand = plan.demand.iloc[spec.rows]
    facilities = {k: f.iloc[spec.facilities[k]] for k, f in plan.facilities.items()}
    result = coverage.analyze(
        demand,
        facilities,
        engine,
        breaks_min=p.breaks_min,
        gdf_units=plan.units,
        gaps=False,
        max_snap_m=p.max_snap_m,
    )
    kinds = [*result.kinds, *result.provenance.get("combined", {})]
    out = result.demand
    far = result.not_snapped[result.not_snapped["layer"] == "demand"]
    inner = shapely.point_on_surface(np.asarray(out.geometry.values))
    return PartitionResult(
        code,
        unit,
        spec.rows,
        id_strings(demand["id"]),
        {k: out[f"time_min_{k}"].to_numpy(dtype=float) for k in kinds},
        {k: out[f"nearest_{k}"].to_numpy(dtype=object) for k in kinds},
        result.table[_KEYS + _COUNTS].reset_index(drop=True),
        far[["id", "distance_m"]].reset_index(drop=True),
        int(sum(len(v) for v in spec.facilities.values())),
        time.perf_counter() - started,
        _worker_name(),
        attempt,
        shapely.get_x(inner),
        shapely.get_y(inner),
        pd.to_numeric(demand["population"]).to_numpy(dtype=float),
        pd.to_numeric(demand["aged_60_plus"]).to_numpy(dtype=float),
    )


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return "local"


# --------------------------------------------------------------------------------------------
# Stitching
# --------------------------------------------------------------------------------------------


def stitch_table(summary: CitySummary, parts: Sequence[PartitionResult]) -> pd.DataFrame:
    """The city's coverage table from its partitions: counts added, shares recomputed, street
    km and flags of the whole network; the same table as the single-process run's."""
    if not parts:
        return pd.DataFrame()
    first = parts[0].table
    counts = {c: first[c].to_numpy(dtype=np.int64).copy() for c in _COUNTS}
    for part in parts[1:]:
        same = len(part.table) == len(first) and all(
            part.table[c].equals(first[c]) for c in ("kind", "unit", "break_min")
        )
        if not same:
            msg = (
                f"city {summary.city.code}: partition {part.unit}'s table rows differ from "
                f"partition {parts[0].unit}'s (kinds or units); expected the same rows"
            )
            raise ValueError(msg)
        for c in _COUNTS:
            counts[c] += part.table[c].to_numpy(dtype=np.int64)
    level = np.asarray([v if isinstance(v, str) else np.nan for v in first["level"]], dtype=object)
    if pd.isna(level).all():
        level = np.full(len(level), np.nan)
    head: dict[str, Any] = {
        "kind": first["kind"].to_numpy(dtype=object),
        "unit": first["unit"].to_numpy(dtype=object),
        "unit_name": first["unit_name"].to_numpy(dtype=object),
        "level": level,
        "break_min": first["break_min"].to_numpy(dtype=float),
    }
    cols: dict[str, Any] = {c: counts[c] for c in _COUNTS}
    with np.errstate(invalid="ignore", divide="ignore"):
        cols["share_population"] = counts["covered_population"] / counts["population"].astype(float)
        cols["share_aged_60_plus"] = counts["covered_aged_60_plus"] / counts["aged_60_plus"].astype(
            float
        )
    table = pd.DataFrame(head | cols)
    if summary.road_km is not None and summary.sparse_roads is not None:
        unit = table["unit"].astype(str)
        table["road_km"] = unit.map(summary.road_km).to_numpy(dtype=float)
        flag = unit.map(summary.sparse_roads).fillna(False).to_numpy(dtype=bool)
        table["sparse_roads"] = flag
        for column in ("share_population", "share_aged_60_plus"):
            table.loc[flag, column] = np.nan
    return table


def stitch_demand(summary: CitySummary, parts: Sequence[PartitionResult]) -> pd.DataFrame:
    """Per demand point of the city, in layer order: id, partition, and per kind the nearest
    facility and the minutes to it (inf: none within the largest break)."""
    n = summary.n_demand
    kinds = parts[0].kinds if parts else []
    ids = np.full(n, None, dtype=object)
    unit = np.full(n, None, dtype=object)
    cols: dict[str, np.ndarray] = {}
    for kind in kinds:
        cols[f"nearest_{kind}"] = np.full(n, None, dtype=object)
        cols[f"time_min_{kind}"] = np.full(n, np.nan)
    for part in parts:
        ids[part.rows] = part.ids
        unit[part.rows] = part.unit
        for kind in kinds:
            cols[f"nearest_{kind}"][part.rows] = part.nearest[kind]
            cols[f"time_min_{kind}"][part.rows] = part.times_min[kind]
    frame = pd.DataFrame({"id": ids, "partition": unit})
    for name, values in cols.items():
        frame[name] = pd.Series(values, dtype=object) if name.startswith("nearest_") else values
    return frame


# --------------------------------------------------------------------------------------------
# Where a run's results go: one GeoPackage per run, or PostGIS
# --------------------------------------------------------------------------------------------


class RunStore(Protocol):
    """Persistence of a province run: its parameters, each finished city plan and partition
    (as soon as it finishes, so that a run resumes), every failure, and the final results."""

    where: str

    def begin(
        self, run_id: str, parameters: dict[str, Any], source: str, *, points: bool = True
    ) -> None:
        """Start or resume ``run_id`` (ValueError when it exists with other parameters or
        another source); ``points``: also store every demand point's results."""
        ...

    def cities(self) -> dict[str, CitySummary]: ...

    def put_city(self, summary: CitySummary) -> None: ...

    def done(self) -> set[tuple[str, str]]: ...

    def put_partition(self, result: PartitionResult) -> None: ...

    def partition(self, city: str, unit: str) -> PartitionResult: ...

    def put_failure(self, failure: dict[str, Any]) -> None: ...

    def failures(self) -> list[dict[str, Any]]: ...

    def put_results(self, run: ProvinceRun, units: gpd.GeoDataFrame | None) -> None: ...


_RUN_ID = re.compile(r"^[a-z0-9_]{1,40}$")


def check_run_id(run_id: str) -> str:
    """A run ID: 1-40 of a-z, 0-9 and _ (it names files and tables)."""
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
        msg = f"run_id must be 1-40 characters of a-z, 0-9 and _, got {run_id!r}"
        raise ValueError(msg)
    return run_id


def new_run_id() -> str:
    """A run ID from the time, e.g. ``20261124_093012``."""
    return dt.datetime.now().strftime("%Y%m%d_%H%M%S")


class _SqlRunStore:
    """The bookkeeping tables shared by both backends (``ph``: the driver's placeholder)."""

    ph = "?"
    blob = "BLOB"
    where = ""

    @contextlib.contextmanager
    def _db(self) -> Iterator[Any]:  # pragma: no cover - each backend's own
        raise NotImplementedError
        yield

    def _q(self, sql: str) -> str:
        return sql.replace("?", self.ph)

    def _tables(self) -> list[str]:
        b = self.blob
        return [
            "CREATE TABLE IF NOT EXISTS gm_run (run_id TEXT PRIMARY KEY, parameters TEXT, "
            "source TEXT, started TEXT)",
            f"CREATE TABLE IF NOT EXISTS gm_cities (run_id TEXT, city TEXT, payload {b}, "
            "PRIMARY KEY (run_id, city))",
            "CREATE TABLE IF NOT EXISTS gm_partitions (run_id TEXT, city TEXT, unit TEXT, "
            "attempt INTEGER, seconds REAL, worker TEXT, n_demand INTEGER, n_facilities INTEGER, "
            f"payload {b}, PRIMARY KEY (run_id, city, unit))",
            "CREATE TABLE IF NOT EXISTS gm_failures (run_id TEXT, city TEXT, unit TEXT, "
            "attempt INTEGER, error TEXT, at TEXT)",
        ]

    run_id = ""
    #: Also write every demand point with its results, partition by partition
    points = True

    def begin(
        self, run_id: str, parameters: dict[str, Any], source: str, *, points: bool = True
    ) -> None:
        self.run_id = check_run_id(run_id)
        self.points = points
        text = json.dumps(parameters, sort_keys=True)
        with self._db() as db:
            for sql in self._tables():
                db.execute(sql)
            row = db.execute(
                self._q("SELECT parameters, source FROM gm_run WHERE run_id = ?"), (run_id,)
            ).fetchone()
            if row is not None and row[1] != source:
                msg = (
                    f"run '{run_id}' was started on another province ({Path(row[1]).name}); "
                    f"got {Path(source).name}: start a new run"
                )
                raise ValueError(msg)
            if row is None:
                db.execute(
                    self._q("INSERT INTO gm_run VALUES (?, ?, ?, ?)"),
                    (run_id, text, source, dt.datetime.now(dt.UTC).isoformat()),
                )
            elif row[0] != text:
                msg = (
                    f"run '{run_id}' was started with other parameters ({row[0]}); "
                    f"got {text}: resume it with the same parameters or start a new run"
                )
                raise ValueError(msg)

    def cities(self) -> dict[str, CitySummary]:
        with self._db() as db:
            rows = db.execute(
                self._q("SELECT city, payload FROM gm_cities WHERE run_id = ?"), (self.run_id,)
            ).fetchall()
        return {str(c): CitySummary.from_bytes(bytes(b)) for c, b in rows}

    def put_city(self, summary: CitySummary) -> None:
        with self._db() as db:
            db.execute(
                self._q("DELETE FROM gm_cities WHERE run_id = ? AND city = ?"),
                (self.run_id, summary.city.code),
            )
            db.execute(
                self._q("INSERT INTO gm_cities VALUES (?, ?, ?)"),
                (self.run_id, summary.city.code, summary.to_bytes()),
            )

    def done(self) -> set[tuple[str, str]]:
        with self._db() as db:
            rows = db.execute(
                self._q("SELECT city, unit FROM gm_partitions WHERE run_id = ?"), (self.run_id,)
            ).fetchall()
        return {(str(c), str(u)) for c, u in rows}

    def _put_points(self, db: Any, result: PartitionResult) -> None:  # pragma: no cover
        raise NotImplementedError

    def put_partition(self, result: PartitionResult) -> None:
        """The partition's results and, with ``points``, its demand points, in one transaction
        (a partition is either saved whole or not at all)."""
        with self._db() as db:
            if self.points and len(result.rows):
                self._put_points(db, result)
            db.execute(
                self._q("INSERT INTO gm_partitions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"),
                (
                    self.run_id,
                    result.city,
                    result.unit,
                    result.attempt,
                    result.seconds,
                    result.worker,
                    len(result.rows),
                    result.n_facilities,
                    result.to_bytes(),
                ),
            )

    def partition(self, city: str, unit: str) -> PartitionResult:
        with self._db() as db:
            row = db.execute(
                self._q(
                    "SELECT payload FROM gm_partitions WHERE run_id = ? AND city = ? AND unit = ?"
                ),
                (self.run_id, city, unit),
            ).fetchone()
        if row is None:
            msg = f"run '{self.run_id}' has no finished partition {city}/{unit}"
            raise UnknownIdError(msg)
        return PartitionResult.from_bytes(bytes(row[0]))

    def put_failure(self, failure: dict[str, Any]) -> None:
        with self._db() as db:
            db.execute(
                self._q("INSERT INTO gm_failures VALUES (?, ?, ?, ?, ?, ?)"),
                (
                    self.run_id,
                    failure["city"],
                    failure["unit"],
                    failure["attempt"],
                    failure["error"],
                    failure["at"],
                ),
            )

    def failures(self) -> list[dict[str, Any]]:
        with self._db() as db:
            rows = db.execute(
                self._q(
                    "SELECT city, unit, attempt, error, at FROM gm_failures WHERE run_id = ? "
                    "ORDER BY at"
                ),
                (self.run_id,),
            ).fetchall()
        keys = ("city", "unit", "attempt", "error", "at")
        return [dict(zip(keys, r, strict=True)) for r in rows]


class GpkgRunStore(_SqlRunStore):
    """One GeoPackage per run: the bookkeeping tables (``gm_*``, attribute tables), and at the
    end ``coverage_table`` (the stitched table), ``unit_coverage`` (unit polygons with their
    shares at the largest break) and ``coverage_points`` (every demand point with its nearest
    facility and minutes per kind). Only the process running the run writes to it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.where = str(self.path)

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # an empty, valid GeoPackage (application id, metadata tables) from GDAL
            pyogrio.write_dataframe(
                pd.DataFrame({"key": ["created"], "value": [dt.datetime.now(dt.UTC).isoformat()]}),
                self.path,
                layer="run_info",
                driver="GPKG",
            )
        conn = sqlite3.connect(self.path, timeout=60)
        try:
            with conn:
                yield conn
                for table in ("gm_run", "gm_cities", "gm_partitions", "gm_failures"):
                    conn.execute(
                        "INSERT OR IGNORE INTO gpkg_contents (table_name, data_type, identifier) "
                        "SELECT ?, 'attributes', ? WHERE EXISTS (SELECT 1 FROM sqlite_master "
                        "WHERE name = ?)",
                        (table, table, table),
                    )
        finally:
            conn.close()

    def _put_points(self, db: sqlite3.Connection, result: PartitionResult) -> None:
        """Append the partition's demand points to ``coverage_points`` (a GeoPackage point layer
        made here, without a spatial index: GDAL's index triggers need its SQL functions)."""
        db.execute(
            "CREATE TABLE IF NOT EXISTS coverage_points (fid INTEGER PRIMARY KEY AUTOINCREMENT, "
            "geom POINT, city TEXT, id TEXT, unit TEXT, population REAL, aged_60_plus REAL)"
        )
        db.execute(
            "INSERT OR IGNORE INTO gpkg_contents (table_name, data_type, identifier, srs_id) "
            "VALUES ('coverage_points', 'features', 'coverage_points', 4326)"
        )
        db.execute(
            "INSERT OR IGNORE INTO gpkg_geometry_columns VALUES "
            "('coverage_points', 'geom', 'POINT', 4326, 0, 0)"
        )
        have = {r[1] for r in db.execute("PRAGMA table_info(coverage_points)")}
        columns = ["geom", "city", "id", "unit", "population", "aged_60_plus"]
        for kind in result.kinds:
            for name, sql_type in ((f"nearest_{kind}", "TEXT"), (f"time_min_{kind}", "REAL")):
                if name not in have:
                    db.execute(f'ALTER TABLE coverage_points ADD COLUMN "{name}" {sql_type}')
                columns.append(name)
        n = len(result.rows)
        values: list[Sequence[Any]] = [
            _point_blobs(result.lon, result.lat),
            [result.city] * n,
            result.ids.tolist(),
            [result.unit] * n,
            result.population.tolist(),
            result.aged_60_plus.tolist(),
        ]
        for kind in result.kinds:
            values.append(result.nearest[kind].tolist())
            values.append(result.times_min[kind].tolist())
        quoted = ", ".join(f'"{c}"' for c in columns)
        marks = ", ".join("?" * len(columns))
        db.executemany(
            f"INSERT INTO coverage_points ({quoted}) VALUES ({marks})", zip(*values, strict=True)
        )

    def put_results(self, run: ProvinceRun, units: gpd.GeoDataFrame | None) -> None:
        info = pd.DataFrame(
            {
                "key": ["run_id", "parameters", "source", "complete", "seconds"],
                "value": [
                    run.run_id,
                    json.dumps(run.params.as_dict()),
                    run.source,
                    str(run.complete),
                    f"{run.seconds:.3f}",
                ],
            }
        )
        pyogrio.write_dataframe(info, self.path, layer="run_info", driver="GPKG")
        table = run.table.copy()
        table["level"] = table["level"].astype(object).where(table["level"].notna(), None)
        pyogrio.write_dataframe(table, self.path, layer="coverage_table", driver="GPKG")
        if units is not None and len(run.table):
            pyogrio.write_dataframe(
                run.unit_layer(units), self.path, layer="unit_coverage", driver="GPKG"
            )


class PostgisRunStore(_SqlRunStore):
    """PostGIS: the bookkeeping tables (``gm_*``, keyed by run ID), the run's parameters in
    ``gm_run``, and one result table per run, ``province_<run_id>`` (every demand point, WGS84,
    with its nearest facility and minutes per kind; its comment holds the parameters), with the
    stitched table in ``province_<run_id>_table``."""

    ph = "%s"
    blob = "BYTEA"

    def __init__(self, url: str) -> None:
        self.url = url
        self.where = re.sub(r"//[^@/]*@", "//", url)  # no password in reports

    @contextlib.contextmanager
    def _db(self) -> Iterator[Any]:
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - the postgis extra
            msg = f"PostGIS results need psycopg (pip install 'geo-minzheng[postgis]'): {exc}"
            raise StoreError(msg) from None
        with psycopg.connect(self.url) as conn:
            yield conn

    def _put_points(self, db: Any, result: PartitionResult) -> None:
        """Append the partition's demand points to the run's table ``province_<run_id>``."""
        from psycopg import sql

        name = sql.Identifier(f"province_{self.run_id}")
        db.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (city text, id text, unit text, population "
                "double precision, aged_60_plus double precision, geom geometry(Point, 4326))"
            ).format(name)
        )
        db.execute(
            sql.SQL("COMMENT ON TABLE {} IS {}").format(
                name, sql.Literal(json.dumps({"run_id": self.run_id} | self.parameters))
            )
        )
        columns = ["city", "id", "unit", "population", "aged_60_plus"]
        for kind in result.kinds:
            db.execute(
                sql.SQL(
                    "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} text, "
                    "ADD COLUMN IF NOT EXISTS {} double precision"
                ).format(
                    name, sql.Identifier(f"nearest_{kind}"), sql.Identifier(f"time_min_{kind}")
                )
            )
            columns += [f"nearest_{kind}", f"time_min_{kind}"]
        wkb = shapely.to_wkb(
            shapely.set_srid(shapely.points(result.lon, result.lat), 4326),
            hex=True,
            include_srid=True,
        )
        n = len(result.rows)
        values: list[Sequence[Any]] = [
            [result.city] * n,
            result.ids.tolist(),
            [result.unit] * n,
            result.population.tolist(),
            result.aged_60_plus.tolist(),
        ]
        for kind in result.kinds:
            values += [result.nearest[kind].tolist(), result.times_min[kind].tolist()]
        copy = sql.SQL("COPY {} ({}) FROM STDIN").format(
            name, sql.SQL(", ").join(sql.Identifier(c) for c in [*columns, "geom"])
        )
        with db.cursor().copy(copy) as cp:
            for row in zip(*values, wkb, strict=True):
                cp.write_row([_pg_value(v) for v in row])

    parameters: dict[str, Any] = {}

    def begin(
        self, run_id: str, parameters: dict[str, Any], source: str, *, points: bool = True
    ) -> None:
        self.parameters = dict(parameters)
        super().begin(run_id, parameters, source, points=points)

    def put_results(self, run: ProvinceRun, units: gpd.GeoDataFrame | None) -> None:
        from psycopg import sql

        del units
        table = f"province_{self.run_id}_table"
        cols = ["city", "kind", "unit", "unit_name", "level", "break_min", *_COUNTS]
        cols += ["share_population", "share_aged_60_plus"]
        with self._db() as db:
            db.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
            db.execute(
                sql.SQL(
                    "CREATE TABLE {} (city text, kind text, unit text, unit_name text, "
                    "level text, break_min double precision, population bigint, "
                    "aged_60_plus bigint, covered_population bigint, covered_aged_60_plus "
                    "bigint, share_population double precision, share_aged_60_plus double "
                    "precision)"
                ).format(sql.Identifier(table))
            )
            if not len(run.table):
                return
            with db.cursor().copy(
                sql.SQL("COPY {} FROM STDIN").format(sql.Identifier(table))
            ) as cp:
                for row in run.table[cols].itertuples(index=False):
                    cp.write_row([_pg_value(v) for v in row])


#: A GeoPackage point blob: header (magic, version, flags: little endian without envelope,
#: srs_id) and the little-endian WKB point, 29 bytes.
_GPKG_POINT = np.dtype(
    [
        ("magic", "S2"),
        ("version", "u1"),
        ("flags", "u1"),
        ("srs", "<i4"),
        ("order", "u1"),
        ("type", "<u4"),
        ("x", "<f8"),
        ("y", "<f8"),
    ]
)


def _point_blobs(lon: np.ndarray, lat: np.ndarray) -> list[bytes | None]:
    """GeoPackage geometry blobs of WGS84 points (None where a coordinate is missing)."""
    blobs = np.zeros(len(lon), dtype=_GPKG_POINT)
    blobs["magic"], blobs["flags"], blobs["srs"] = b"GP", 0b0000_0001, 4326
    blobs["order"], blobs["type"] = 1, 1
    blobs["x"], blobs["y"] = lon, lat
    raw = blobs.tobytes()
    size = _GPKG_POINT.itemsize
    ok = np.isfinite(lon) & np.isfinite(lat)
    return [raw[i * size : (i + 1) * size] if ok[i] else None for i in range(len(lon))]


def _pg_value(value: Any) -> Any:
    """NaN and missing values as NULL; numpy scalars as Python numbers."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if value is pd.NA:
        return None
    if hasattr(value, "item"):
        return value.item()
    return value


def open_run_store(out: str | Path, run_id: str) -> RunStore:
    """The run's store: ``postgresql://...`` (PostGIS), else a folder holding
    ``province-<run_id>.gpkg``."""
    text = str(out)
    if text.startswith(("postgresql://", "postgres://")):
        return PostgisRunStore(text)
    return GpkgRunStore(Path(out) / f"province-{check_run_id(run_id)}.gpkg")


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


@dataclass
class ProvinceRun:
    """A province run: the stitched tables and per-point results, and how the run went.

    Attributes
    ----------
    table
        The coverage table of every city (``city`` first, then the coverage workflow's columns),
        cities in file order.
    demand
        Every demand point: city, id, partition, per kind ``nearest_<kind>`` and
        ``time_min_<kind>`` (inf: none within the largest break).
    partitions
        One row per partition: city, unit, name, attempt (0: first try), seconds, worker,
        n_demand, n_facilities (within reach of it), resumed (finished by an earlier start).
    failures
        Every failed try: city, unit ('' for a city's network), attempt, error, at.
    worker_peak_mb
        Peak resident memory of each worker process (MB; a restarted worker counts anew).
    """

    run_id: str
    params: ProvinceParams
    source: str
    cities: list[City]
    table: pd.DataFrame
    demand: pd.DataFrame
    not_snapped: pd.DataFrame
    partitions: pd.DataFrame
    failures: list[dict[str, Any]]
    summaries: dict[str, CitySummary]
    worker_peak_mb: dict[str, float] = field(default_factory=dict)
    dashboard: str | None = None
    seconds: float = 0.0
    store: str = ""
    complete: bool = True
    #: Partitions (``city/unit``, ``city/network`` for a city whose network failed) not done.
    missing: list[str] = field(default_factory=list)
    #: Seconds of each phase: cluster (start), compute, cluster_close, stitch, save.
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def kinds(self) -> list[str]:
        return [c.removeprefix("nearest_") for c in self.demand.columns if c.startswith("nearest_")]

    def city_table(self, code: str) -> pd.DataFrame:
        """One city's table, as :func:`geo_minzheng.workflows.run_coverage` gives it."""
        t = self.table[self.table["city"] == code].drop(columns="city")
        return t.reset_index(drop=True)

    def city_demand(self, code: str) -> pd.DataFrame:
        """One city's per-point results, in the order of its demand layer."""
        return self.demand[self.demand["city"] == code].drop(columns="city").reset_index(drop=True)

    def unit_shares(self, kind: str | None = None, break_min: float | None = None) -> pd.DataFrame:
        """Per partition unit (county) of every city: people, aged 60+, and the shares within
        ``break_min`` (default the largest) of ``kind`` (default the first)."""
        kind = kind or (self.kinds[0] if self.kinds else "")
        break_min = float(break_min if break_min is not None else max(self.params.breaks_min))
        t = self.table[
            (self.table["kind"] == kind)
            & (self.table["break_min"] == break_min)
            & (self.table["unit"] != coverage.TOTAL)
        ]
        wanted = {(c, u) for c, s in self.summaries.items() for u in s.partitions}
        keep = [(c, u) in wanted for c, u in zip(t["city"], t["unit"], strict=True)]
        return t[keep].reset_index(drop=True)

    def unit_layer(self, units: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
        """Unit polygons (``ProvinceFile.units``) with every kind's shares at the largest break."""
        largest = max(self.params.breaks_min)
        t = self.table[
            (self.table["break_min"] == largest) & (self.table["unit"] != coverage.TOTAL)
        ]
        wide = t.pivot_table(
            index=["city", "unit"],
            columns="kind",
            values=["share_population", "share_aged_60_plus"],
            sort=False,
        )
        wide.columns = [f"{v}_{k}" for v, k in wide.columns]
        pops = t.drop_duplicates(["city", "unit"]).set_index(["city", "unit"])[
            ["population", "aged_60_plus"]
        ]
        data = pops.join(wide).reset_index()
        base = units[["city", "city_name", "adcode", "name", "level", "geometry"]].copy()
        base["adcode"] = base["adcode"].astype(str)
        out = base.merge(data, left_on=["city", "adcode"], right_on=["city", "unit"], how="left")
        return gpd.GeoDataFrame(out.drop(columns="unit"), geometry="geometry", crs=4326)

    def report(self) -> dict[str, Any]:
        """How the run went, as JSON values (for the CLI, the API and the benchmark)."""
        return {
            "run_id": self.run_id,
            "complete": self.complete,
            "missing": self.missing,
            "cities": len(self.cities),
            "partitions": len(self.partitions),
            "resumed": int(self.partitions["resumed"].sum()) if len(self.partitions) else 0,
            "demand_points": int(len(self.demand)),
            "directed_edges": int(sum(s.n_edges for s in self.summaries.values())),
            "failures": self.failures,
            "worker_peak_mb": self.worker_peak_mb,
            "dashboard": self.dashboard,
            "seconds": round(self.seconds, 3),
            "timings_s": self.timings_s,
            "store": self.store,
            "parameters": self.params.as_dict(),
        }


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, *, n_workers: int | None = None) -> Iterator[Client]:
    """A client of the scheduler at ``scheduler``, else of a local cluster with ``n_workers``
    worker processes (default one per CPU), one thread each, each watched by a nanny that
    restarts it when it dies. The dashboard runs when bokeh is installed."""
    import logging

    from dask.distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    workers = n_workers or os.cpu_count() or 1
    # a free port of our own (":0"): distributed warns when its default 8787 is taken; without
    # bokeh the server has no dashboard pages, and no link is shown (_dashboard)
    dashboard = ":0"
    if _has_bokeh():
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            dashboard = f"127.0.0.1:{sock.getsockname()[1]}"
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=dashboard,
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def _has_bokeh() -> bool:
    import importlib.util

    return importlib.util.find_spec("bokeh") is not None


def _dashboard(client: Client, *, local: bool) -> str | None:
    """The dashboard's link; None for a local cluster without bokeh (no dashboard pages)."""
    if local and not _has_bokeh():
        return None
    with contextlib.suppress(Exception):
        info = client.scheduler_info()
        if info.get("services", {}).get("dashboard"):
            return str(client.dashboard_link)
    return None


def _peak_rss_mb() -> float:
    """Peak resident memory of this process, MB (Linux reports kB, macOS bytes)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return float(peak) / (1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0)


def _error_text(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 500 else text[:497] + "..."


def run_province(
    source: ProvinceFile | str | Path,
    p: ProvinceParams | None = None,
    *,
    out: RunStore | str | Path | None = None,
    run_id: str | None = None,
    scheduler: str | None = None,
    n_workers: int | None = None,
    client: Client | None = None,
    progress: workflows.Progress = _no_progress,
    before_partition: Callable[[str, str, int], None] | None = None,
    points: bool = True,
) -> ProvinceRun:
    """Coverage of every city of a province, partitioned by admin unit, on Dask.

    Parameters
    ----------
    source
        The province GeoPackage (:class:`ProvinceFile`), readable by every worker.
    p
        The run's parameters.
    out
        Where results go: a :class:`RunStore`, a ``postgresql://`` URL, or a folder for
        ``province-<run_id>.gpkg`` (default the current folder).
    run_id
        The run's ID (default from the time). A run started again with the same ID and store
        resumes: finished partitions are read back, not redone.
    scheduler
        Address of a Dask scheduler (``tcp://host:8786``); default a local cluster with
        ``n_workers`` processes (one per CPU), or ``client`` when given.
    progress
        Called with the fraction done and a zh/en message: the dashboard link first, then per
        city network and per partition.
    before_partition
        Called on the worker before each partition with (city, unit, attempt).
    points
        Also store every demand point with its results (``coverage_points``, or the run's
        PostGIS table), partition by partition as they finish.

    Returns
    -------
    ProvinceRun
        ``complete`` is False when a partition failed every try; the failures say why, and a
        new start with the same ``run_id`` resumes.
    """
    started = time.perf_counter()
    p = p or ProvinceParams()
    province = source if isinstance(source, ProvinceFile) else ProvinceFile(Path(source))
    run_id = check_run_id(run_id or new_run_id())
    store = (
        open_run_store(out or Path.cwd(), run_id)
        if out is None or isinstance(out, str | Path)
        else out
    )
    cities = province.cities()
    store.begin(run_id, p.as_dict(), str(province.path), points=points)
    progress(0.01, _TEXT["start"])
    timings: dict[str, float] = {}
    mark = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        timings[name] = round(now - mark, 3)
        mark = now

    with contextlib.ExitStack() as stack:
        local = client is None and not scheduler
        if client is None:
            client = stack.enter_context(dask_client(scheduler, n_workers=n_workers))
        link = _dashboard(client, local=local)
        progress(0.02, _TEXT["dashboard"].format(link=link) if link else _TEXT["no_dashboard"])
        lap("cluster")
        coordinator = _Coordinator(client, province, p, store, run_id, progress, before_partition)
        coordinator.run(cities)
        lap("compute")
        peak = {}
        with contextlib.suppress(Exception):
            peak = {str(k): round(float(v), 1) for k, v in client.run(_peak_rss_mb).items()}
    lap("cluster_close")
    progress(0.93, _TEXT["stitch"])
    run = coordinator.stitch(cities, started)
    run.worker_peak_mb = peak
    run.dashboard = link
    lap("stitch")
    progress(0.96, _TEXT["save"])
    units = province.units()
    store.put_results(run, units)
    lap("save")
    run.timings_s = timings
    run.seconds = time.perf_counter() - started
    progress(1.0, _TEXT["done"])
    return run


class _Coordinator:
    """Submits city plans and partitions, retries what fails, saves what finishes."""

    def __init__(
        self,
        client: Client,
        province: ProvinceFile,
        p: ProvinceParams,
        store: RunStore,
        run_id: str,
        progress: workflows.Progress,
        before: Callable[[str, str, int], None] | None,
    ) -> None:
        self.client = client
        self.province = province
        self.p = p
        self.store = store
        self.run_id = run_id
        self.progress = progress
        self.before = before
        self.summaries: dict[str, CitySummary] = store.cities()
        self.done: set[tuple[str, str]] = store.done()
        self.resumed = set(self.done)
        self.results: dict[tuple[str, str], PartitionResult] = {}
        self.failures: list[dict[str, Any]] = []
        self.lost: list[dict[str, Any]] = []
        self._fraction = 0.02
        # task keys are unique per start: a resumed run on the same cluster never meets the
        # keys of the start before it
        self.nonce = os.urandom(4).hex()

    def run(self, cities: Sequence[City]) -> None:
        from distributed import as_completed

        if self.done:
            self.progress(self._fraction, _TEXT["resume"].format(done=len(self.done)))
        self.plans: dict[str, Any] = {}
        self.tags: dict[str, tuple[str, str, str, int]] = {}
        self.ac = as_completed()
        self.n_cities = len(cities)
        for city in cities:
            summary = self.summaries.get(city.code)
            if summary is not None and all((city.code, u) in self.done for u in summary.partitions):
                continue
            self._submit_city(city.code, 0)
        for fut in self.ac:
            kind, code, unit, attempt = self.tags.pop(str(fut.key))
            if fut.status != "finished":
                self._failed(fut, kind, code, unit, attempt)
            elif kind == "city":
                summary = fut.result()
                self.summaries[code] = summary
                self.store.put_city(summary)
                for u in summary.partitions:
                    if (code, u) not in self.done:
                        self._submit_partition(code, u, 0)
                self._release_if_done(code)
            else:
                result = fut.result()
                self.store.put_partition(result)
                self.results[(code, unit)] = result
                self.done.add((code, unit))
                self._release_if_done(code)
            fut.release()
            self._report()
        self.plans.clear()

    def _release_if_done(self, code: str) -> None:
        """Drop a city's plan once all its partitions are done: the worker frees its network
        (a worker holding every plan of a province would grow, and slow its collector)."""
        summary = self.summaries.get(code)
        if summary is not None and all((code, u) in self.done for u in summary.partitions):
            plan = self.plans.pop(code, None)
            if plan is not None:
                plan.release()

    def _submit_city(self, code: str, attempt: int) -> None:
        key = f"gm-plan-{self.run_id}-{self.nonce}-{code}-{attempt}"
        plan = self.client.submit(plan_city, self.province, code, self.p, key=key)
        self.plans[code] = plan
        summary = self.client.submit(
            plan_summary, plan, key=f"gm-summary-{self.run_id}-{self.nonce}-{code}-{attempt}"
        )
        self.tags[str(summary.key)] = ("city", code, "", attempt)
        self.ac.add(summary)

    def _submit_partition(self, code: str, unit: str, attempt: int) -> None:
        key = f"gm-part-{self.run_id}-{self.nonce}-{code}-{unit}-{attempt}"
        fut = self.client.submit(
            run_partition, self.plans[code], unit, self.p, attempt, self.before, key=key
        )
        self.tags[str(fut.key)] = ("part", code, unit, attempt)
        self.ac.add(fut)

    def _failed(self, fut: Any, kind: str, code: str, unit: str, attempt: int) -> None:
        try:
            exc = fut.exception()
        except Exception as err:  # a cancelled future raises instead of returning its error
            exc = err
        failure = {
            "city": code,
            "unit": unit,
            "attempt": attempt,
            "error": _error_text(exc),
            "at": dt.datetime.now(dt.UTC).isoformat(),
        }
        self.failures.append(failure)
        self.store.put_failure(failure)
        if attempt >= self.p.retries:
            self.lost.append(failure)
        elif kind == "city" or self.plans[code].status != "finished":
            # the plan itself failed: plan again, then the partitions follow from its summary
            if kind == "city":
                self._submit_city(code, attempt + 1)
            else:
                self._resubmit_plan_then(code, unit, attempt + 1)
        else:
            self._submit_partition(code, unit, attempt + 1)

    def _resubmit_plan_then(self, code: str, unit: str, attempt: int) -> None:
        plan_key = f"gm-plan-{self.run_id}-{self.nonce}-{code}-r{attempt}-{unit}"
        self.plans[code] = self.client.submit(plan_city, self.province, code, self.p, key=plan_key)
        self._submit_partition(code, unit, attempt)

    def _report(self) -> None:
        known = sum(len(s.partitions) for s in self.summaries.values())
        cities_ready = len(self.summaries)
        done = len(self.done)
        fraction = 0.03 + 0.9 * (
            0.3 * cities_ready / max(self.n_cities, 1) + 0.7 * done / max(known, 1)
        )
        self._fraction = max(self._fraction, min(fraction, 0.92))
        message = " · ".join(
            [
                _TEXT["city"].format(done=cities_ready, total=self.n_cities),
                _TEXT["part"].format(done=done, total=known),
            ]
            + ([_TEXT["failed"].format(n=len(self.failures))] if self.failures else [])
        )
        self.progress(self._fraction, message)

    def stitch(self, cities: Sequence[City], started: float) -> ProvinceRun:
        tables, demands, far, rows = [], [], [], []
        missing: list[str] = []
        for city in cities:
            summary = self.summaries.get(city.code)
            if summary is None:
                missing.append(f"{city.code}/network")
                continue
            parts = []
            for unit, name in summary.partitions.items():
                key = (city.code, unit)
                if key not in self.done:
                    missing.append(f"{city.code}/{unit}")
                    continue
                result = self.results.get(key) or self.store.partition(*key)
                parts.append(result)
                rows.append(
                    {
                        "city": city.code,
                        "unit": unit,
                        "name": name,
                        "attempt": result.attempt,
                        "seconds": round(result.seconds, 3),
                        "worker": result.worker,
                        "n_demand": len(result.rows),
                        "n_facilities": result.n_facilities,
                        "resumed": key in self.resumed,
                    }
                )
            if len(parts) != len(summary.partitions):
                continue
            tables.append(stitch_table(summary, parts).assign(city=city.code))
            demands.append(stitch_demand(summary, parts).assign(city=city.code))
            demand_far = [
                pr.demand_too_far.assign(row=pr.rows[_positions(pr.ids, pr.demand_too_far["id"])])
                for pr in parts
                if len(pr.demand_too_far)
            ]
            if demand_far:
                d = pd.concat(demand_far).sort_values("row").drop(columns="row")
                far.append(d.assign(layer="demand", city=city.code))
            if len(summary.facilities_too_far):
                far.append(summary.facilities_too_far.assign(city=city.code))
        table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
        if len(table):
            table = table[["city", *[c for c in table.columns if c != "city"]]]
        demand = pd.concat(demands, ignore_index=True) if demands else pd.DataFrame()
        if len(demand):
            demand = demand[["city", *[c for c in demand.columns if c != "city"]]]
        not_snapped = (
            pd.concat(far, ignore_index=True)[["city", "layer", "id", "distance_m"]]
            if far
            else pd.DataFrame(columns=["city", "layer", "id", "distance_m"])
        )
        return ProvinceRun(
            run_id=self.run_id,
            params=self.p,
            source=str(self.province.path),
            cities=list(cities),
            table=table,
            demand=demand,
            not_snapped=not_snapped,
            partitions=pd.DataFrame(
                rows,
                columns=[
                    "city",
                    "unit",
                    "name",
                    "attempt",
                    "seconds",
                    "worker",
                    "n_demand",
                    "n_facilities",
                    "resumed",
                ],
            ),
            failures=self.store.failures(),
            summaries=dict(self.summaries),
            seconds=time.perf_counter() - started,
            store=self.store.where,
            complete=not missing,
            missing=missing,
        )


def _positions(ids: np.ndarray, wanted: pd.Series) -> np.ndarray:
    return pd.Index(ids).get_indexer(wanted.astype(object))


def check_complete(run: ProvinceRun) -> ProvinceRun:
    """``run`` when complete; PartitionError naming the partitions that failed every try."""
    if run.complete:
        return run
    msg = (
        f"province run '{run.run_id}' is incomplete: {', '.join(run.missing)} failed after "
        f"{run.params.retries + 1} tries; start it again with run_id "
        f"'{run.run_id}' to resume (finished partitions are kept)"
    )
    raise PartitionError(msg, run.failures)


# --------------------------------------------------------------------------------------------
# Terminal progress
# --------------------------------------------------------------------------------------------


class TerminalProgress:
    """A one-line progress bar on a terminal (a line per step elsewhere); messages that are not
    progress (the dashboard link) are printed on their own line."""

    def __init__(self, stream: TextIO | None = None, *, width: int = 28) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last = -1

    def __call__(self, fraction: float, message: str) -> None:
        fraction = min(max(float(fraction), 0.0), 1.0)
        filled = int(round(fraction * self.width))
        bar = "#" * filled + "-" * (self.width - filled)
        line = f"[{bar}] {fraction * 100:5.1f}% {message}"
        if self.tty:
            end = "\n" if fraction >= 1.0 or "://" in message else ""
            self.stream.write("\r\x1b[2K" + line + end)
        else:
            step = int(fraction * 20)
            if step == self._last and "://" not in message and fraction < 1.0:
                return
            self._last = step
            self.stream.write(line + "\n")
        self.stream.flush()


def _str_array(values: Any) -> np.ndarray:
    """Values as a fixed-width unicode array (npz files are written without pickles)."""
    arr = np.asarray(list(values), dtype=object)
    return arr.astype(str) if len(arr) else np.zeros(0, dtype="<U1")


def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def single_process(
    source: ProvinceFile, code: str, p: ProvinceParams | None = None
) -> workflows.CoverageRun:
    """The plain single-process coverage run of one city of ``source`` (the reference that a
    province run equals): :func:`geo_minzheng.workflows.run_coverage` on the city's layers."""
    p = p or ProvinceParams()
    layers = source.city_layers(code)
    engine = workflows.engine_for(workflows.road_network(layers, p.network_params()))
    return workflows.run_coverage(layers, engine, p.coverage_params())


__all__ = [
    "CITIES_TABLE",
    "PROVINCE_LAYERS",
    "City",
    "CityPlan",
    "CitySummary",
    "GpkgRunStore",
    "PartitionResult",
    "PartitionSpec",
    "PostgisRunStore",
    "ProvinceFile",
    "ProvinceParams",
    "ProvinceRun",
    "RunStore",
    "TerminalProgress",
    "build_test_province",
    "city_province",
    "check_complete",
    "dask_client",
    "open_run_store",
    "plan_city",
    "reach_m",
    "run_partition",
    "run_province",
    "single_process",
    "stitch_demand",
    "stitch_table",
    "write_province",
]
