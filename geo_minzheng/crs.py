"""Coordinate systems: WGS84, CGCS2000, GCJ-02, BD-09, the working projected CRS, CRS checks.

GCJ-02 (国测局坐标, used by Amap/Tencent) and BD-09 (Baidu) are obfuscated WGS84 variants with no
EPSG code, so pyproj cannot convert them; the forward formulas are the widely published ones
(e.g. the ``coordtransform`` and ``eviltransform`` packages). The reverse GCJ-02 transform is
solved iteratively to sub-millimetre, since the common one-step inverse is off by up to ~2 m.
CGCS2000 (EPSG:4490) and WGS84 differ by centimetres, far below anything the analyses resolve, so
they are treated as the same datum for geographic coordinates.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import shapely
from pyproj import CRS, Proj, Transformer

from geo_minzheng._errors import CRSError, CRSMismatchError

if TYPE_CHECKING:
    import geopandas as gpd

WGS84 = "EPSG:4326"
CGCS2000 = "EPSG:4490"
GCJ02 = "GCJ-02"
BD09 = "BD-09"
#: Names accepted for the obfuscated Chinese systems (case-insensitive).
#: A pipeline that only turns degrees into a transverse Mercator (geographic CGCS2000 or WGS84 to
#: a Gauss-Kruger zone: no datum step); group 1 is the projection's parameters.
_DEGREES_TO_TMERC = (
    r"proj=pipeline step proj=unitconvert xy_in=deg xy_out=rad step proj=tmerc ((?:\S+=\S+ ?)+)"
)
_ALIASES = {
    "gcj02": GCJ02,
    "gcj-02": GCJ02,
    "gcj": GCJ02,
    "amap": GCJ02,
    "bd09": BD09,
    "bd-09": BD09,
    "baidu": BD09,
}

# Krasovsky 1940 ellipsoid parameters used by the GCJ-02 algorithm.
_A = 6378245.0
_EE = 0.00669342162296594323
_X_PI = np.pi * 3000.0 / 180.0
#: Bounding box used by the GCJ-02 algorithm: outside it coordinates are not shifted.
CHINA_BOUNDS = (73.66, 3.86, 135.05, 53.55)


def normalize_crs(crs: object) -> str | CRS:
    """Return GCJ02/BD09 for their aliases, else a pyproj CRS; raise CRSError when unknown."""
    if crs is None:
        msg = "CRS is missing: give the source CRS (e.g. 'EPSG:4326', 'EPSG:4490' or 'GCJ-02')"
        raise CRSError(msg)
    if isinstance(crs, str) and crs.strip().lower() in _ALIASES:
        return _ALIASES[crs.strip().lower()]
    try:
        return CRS.from_user_input(crs)
    except Exception as exc:
        msg = f"unknown CRS {crs!r}: expected an EPSG code, WKT, 'GCJ-02' or 'BD-09'"
        raise CRSError(msg) from exc


def in_china(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """True where (lon, lat) lies inside the box the GCJ-02 algorithm shifts."""
    west, south, east, north = CHINA_BOUNDS
    return (lon > west) & (lon < east) & (lat > south) & (lat < north)


def _delta(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """GCJ-02 offset (degrees) at WGS84 (lon, lat)."""
    x, y = lon - 105.0, lat - 35.0
    sqrt_abs_x = np.sqrt(np.abs(x))
    common = (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * sqrt_abs_x + common
    dlat += (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
    dlat += (160.0 * np.sin(y / 12.0 * np.pi) + 320.0 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0
    dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * sqrt_abs_x + common
    dlon += (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
    dlon += (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0
    radlat = lat / 180.0 * np.pi
    magic = 1.0 - _EE * np.sin(radlat) ** 2
    sqrt_magic = np.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1.0 - _EE)) / (magic * sqrt_magic) * np.pi)
    dlon = (dlon * 180.0) / (_A / sqrt_magic * np.cos(radlat) * np.pi)
    return dlon, dlat


def wgs84_to_gcj02(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward GCJ-02 shift; points outside China are returned unchanged."""
    lon, lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    dlon, dlat = _delta(lon, lat)
    inside = in_china(lon, lat)
    return np.where(inside, lon + dlon, lon), np.where(inside, lat + dlat, lat)


def gcj02_to_wgs84(
    lon: np.ndarray, lat: np.ndarray, *, tolerance_deg: float = 1e-10, max_iter: int = 30
) -> tuple[np.ndarray, np.ndarray]:
    """Inverse GCJ-02 by fixed-point iteration; converges to < 1e-10 deg (~0.01 mm)."""
    gcj_lon, gcj_lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    wgs_lon, wgs_lat = gcj_lon.copy(), gcj_lat.copy()
    for _ in range(max_iter):
        fwd_lon, fwd_lat = wgs84_to_gcj02(wgs_lon, wgs_lat)
        err_lon, err_lat = fwd_lon - gcj_lon, fwd_lat - gcj_lat
        wgs_lon, wgs_lat = wgs_lon - err_lon, wgs_lat - err_lat
        if max(np.max(np.abs(err_lon), initial=0), np.max(np.abs(err_lat), initial=0)) < (
            tolerance_deg
        ):
            break
    return wgs_lon, wgs_lat


def gcj02_to_bd09(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward BD-09 transform from GCJ-02 (Baidu's published formula)."""
    lon, lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    z = np.sqrt(lon * lon + lat * lat) + 0.00002 * np.sin(lat * _X_PI)
    theta = np.arctan2(lat, lon) + 0.000003 * np.cos(lon * _X_PI)
    return z * np.cos(theta) + 0.0065, z * np.sin(theta) + 0.006


def bd09_to_gcj02(
    lon: np.ndarray, lat: np.ndarray, *, tolerance_deg: float = 1e-10, max_iter: int = 30
) -> tuple[np.ndarray, np.ndarray]:
    """Inverse BD-09: the published one-step inverse refined by fixed-point iteration."""
    bd_lon, bd_lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    x, y = bd_lon - 0.0065, bd_lat - 0.006
    z = np.sqrt(x * x + y * y) - 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) - 0.000003 * np.cos(x * _X_PI)
    gcj_lon, gcj_lat = z * np.cos(theta), z * np.sin(theta)
    for _ in range(max_iter):
        fwd_lon, fwd_lat = gcj02_to_bd09(gcj_lon, gcj_lat)
        err_lon, err_lat = fwd_lon - bd_lon, fwd_lat - bd_lat
        gcj_lon, gcj_lat = gcj_lon - err_lon, gcj_lat - err_lat
        if max(np.max(np.abs(err_lon), initial=0), np.max(np.abs(err_lat), initial=0)) < (
            tolerance_deg
        ):
            break
    return gcj_lon, gcj_lat


def wgs84_to_bd09(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """WGS84 to BD-09 via GCJ-02."""
    return gcj02_to_bd09(*wgs84_to_gcj02(lon, lat))


def bd09_to_wgs84(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """BD-09 to WGS84 via GCJ-02 (both inverses iterative)."""
    return gcj02_to_wgs84(*bd09_to_gcj02(lon, lat))


_TO_WGS84 = {GCJ02: gcj02_to_wgs84, BD09: bd09_to_wgs84}
_FROM_WGS84 = {GCJ02: wgs84_to_gcj02, BD09: wgs84_to_bd09}


def _apply_xy(geoms: np.ndarray, func) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Apply a vectorised (lon, lat) -> (lon, lat) function to every vertex of ``geoms``."""

    def _coords(xy: np.ndarray) -> np.ndarray:
        lon, lat = func(xy[:, 0], xy[:, 1])
        return np.column_stack([lon, lat])

    return shapely.transform(geoms, _coords)


def to_wgs84(gdf: gpd.GeoDataFrame, source_crs: object | None = None) -> gpd.GeoDataFrame:
    """A copy of ``gdf`` in WGS84; ``source_crs`` overrides the frame's CRS (e.g. 'GCJ-02').

    The input frame is never modified.
    """
    crs = normalize_crs(source_crs if source_crs is not None else gdf.crs)
    out = gdf.copy()
    if isinstance(crs, str):
        out = out.set_crs(None, allow_override=True) if out.crs is not None else out
        geoms = _apply_xy(np.asarray(out.geometry.values), _TO_WGS84[crs])
        return out.set_geometry(geoms, crs=WGS84)
    if out.crs is None or source_crs is not None:
        out = out.set_crs(crs, allow_override=True)
    return out.to_crs(WGS84)


def from_wgs84(gdf: gpd.GeoDataFrame, target_crs: object) -> gpd.GeoDataFrame:
    """A copy of a WGS84 ``gdf`` in ``target_crs`` (an EPSG CRS, 'GCJ-02' or 'BD-09')."""
    crs = normalize_crs(target_crs)
    wgs = gdf.to_crs(WGS84)
    if isinstance(crs, str):
        geoms = _apply_xy(np.asarray(wgs.geometry.values), _FROM_WGS84[crs])
        # GCJ-02/BD-09 have no EPSG code; the frame is marked with no CRS and the caller records it
        return wgs.set_geometry(geoms, crs=None)
    return wgs.to_crs(crs)


@functools.cache
def point_transform(
    source: str, target: str, *, fast: bool = False
) -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """``transform(x, y)`` from CRS ``source`` to ``target`` (any pyproj input, e.g. ``crs.srs``),
    lon/lat order for geographic CRSs, built once per pair.

    ``fast`` runs transverse Mercator (Gauss-Kruger, UTM) steps in PROJ's ``approx`` mode
    (Evenden/Snyder), twice as fast as the default (Poder/Engsager); measured against it for
    CGCS2000 3-degree zones: 1e-7 m off 1.5 degrees from the central meridian (a zone's edge),
    0.15 mm at 6 degrees. Nothing for snapping points to streets; not for coordinates a user
    gets back.
    """
    exact = Transformer.from_crs(source, target, always_xy=True)
    definition = exact.definition
    if not fast or "proj=tmerc" not in definition or "approx" in definition:
        return exact.transform
    plain = re.fullmatch(_DEGREES_TO_TMERC, definition)
    if plain:  # degrees straight into the projection: a Proj call skips the pipeline (-25 %)
        return Proj(f"+proj=tmerc +approx {plain.group(1).replace(' ', ' +')}")
    return Transformer.from_pipeline(
        definition.replace("proj=tmerc", "proj=tmerc approx")
    ).transform


def working_crs(lon: float, lat: float) -> CRS:
    """CGCS2000 3-degree Gauss-Krüger CRS (central meridian nearest ``lon``) for metric work.

    3-degree zones keep scale error below 1/2,700 across a city (GB/T 17798 practice); the zone
    whose central meridian is nearest the city centre is picked, e.g. CM 126E for Changchun.
    """
    if not (CHINA_BOUNDS[0] <= lon <= CHINA_BOUNDS[2] and -90 <= lat <= 90):
        west, east = CHINA_BOUNDS[0], CHINA_BOUNDS[2]
        msg = f"working_crs: lon must be within China ({west}..{east}), got {lon}"
        raise CRSError(msg)
    central_meridian = int(round(lon / 3.0) * 3)
    # EPSG:4534 is CGCS2000 / 3-degree Gauss-Kruger CM 75E; codes step by one per 3 degrees.
    epsg = 4534 + (central_meridian - 75) // 3
    return CRS.from_epsg(epsg)


def ensure_same_crs(**layers: gpd.GeoDataFrame) -> None:
    """Raise CRSMismatchError naming both layers and CRSs if the given frames' CRSs differ."""
    items = list(layers.items())
    if not items:
        return
    first_name, first = items[0]
    for name, gdf in items[1:]:
        if first.crs is None or gdf.crs is None or not CRS(first.crs).equals(CRS(gdf.crs)):
            a = first.crs.to_string() if first.crs is not None else "none"
            b = gdf.crs.to_string() if gdf.crs is not None else "none"
            msg = (
                f"CRS mismatch: layer '{first_name}' is in {a} but layer '{name}' is in {b}; "
                "reproject one with gdf.to_crs(...) "
                "(or geo_minzheng.crs.to_wgs84 for GCJ-02/BD-09)"
            )
            raise CRSMismatchError(msg)
