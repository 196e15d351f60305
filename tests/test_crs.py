"""CRS conversions against published test pairs and the independent ``eviltransform`` package."""

from __future__ import annotations

import eviltransform
import geopandas as gpd
import numpy as np
import pytest
import shapely
from pyproj import Geod

from geo_minzheng import crs
from geo_minzheng._errors import CRSError, CRSMismatchError

GEOD = Geod(ellps="WGS84")


def _dist_m(lon1, lat1, lon2, lat2) -> np.ndarray:
    """Geodesic distance in metres (pyproj; eviltransform.distance uses acos, ~0.1 m noise)."""
    return np.asarray(GEOD.inv(lon1, lat1, lon2, lat2)[2])


@pytest.fixture(scope="module")
def china_points() -> tuple[np.ndarray, np.ndarray]:
    """1,000 random WGS84 points across mainland China (inside both libraries' China boxes)."""
    rng = np.random.default_rng(20240501)
    return rng.uniform(75.0, 134.0, 1000), rng.uniform(18.0, 53.0, 1000)


# Published pairs. wandergis/coordtransform test/app.js (lon, lat), input 116.404, 39.915:
#   wgs84togcj02 -> 116.41024449916938, 39.91640428150164
#   gcj02tobd09  -> 116.41036949371029, 39.92133699351021
#   bd09togcj02 (one-step) -> 116.39762729119315, 39.90865673957631
#   gcj02towgs84 (one-step) -> 116.39775550083061, 39.91359571849836
# googollee/eviltransform test (wgsLat, wgsLng, gcjLat, gcjLng), shanghai/shenzhen/beijing.
# hujiulong/gcoord test/unit/crs/GCJ02.spec.js: GCJ02->WGS84 (123, 45) ->
# (122.99395597, 44.99804071) and GCJ02->BD09 (123, 45) -> (123.00636499, 45.00636899),
# both to 5 decimals.
EVILTRANSFORM_PAIRS = [
    (31.1774276, 121.5272106, 31.17530398364597, 121.531541859215),
    (22.543847, 113.912316, 22.540796131694766, 113.9171764808363),
    (39.911954, 116.377817, 39.91334545536069, 116.38404722455657),
]


def test_forward_gcj02_matches_coordtransform_published_pair() -> None:
    lon, lat = crs.wgs84_to_gcj02(116.404, 39.915)
    assert float(lon) == pytest.approx(116.41024449916938, abs=1e-11)
    assert float(lat) == pytest.approx(39.91640428150164, abs=1e-11)


@pytest.mark.parametrize(("wgs_lat", "wgs_lon", "gcj_lat", "gcj_lon"), EVILTRANSFORM_PAIRS)
def test_forward_gcj02_matches_eviltransform_published_pairs(
    wgs_lat: float, wgs_lon: float, gcj_lat: float, gcj_lon: float
) -> None:
    lon, lat = crs.wgs84_to_gcj02(wgs_lon, wgs_lat)
    # eviltransform uses the WGS84 semi-major axis instead of Krasovsky's: ~1 cm apart
    assert _dist_m(lon, lat, gcj_lon, gcj_lat) < 0.05
    back_lon, back_lat = crs.gcj02_to_wgs84(gcj_lon, gcj_lat)
    assert _dist_m(back_lon, back_lat, wgs_lon, wgs_lat) < 0.05


def test_inverse_gcj02_recovers_published_input() -> None:
    lon, lat = crs.gcj02_to_wgs84(116.41024449916938, 39.91640428150164)
    assert _dist_m(lon, lat, 116.404, 39.915) < 1e-6
    # gcoord's published inverse, given to 5 decimals (~1 m)
    lon, lat = crs.gcj02_to_wgs84(123.0, 45.0)
    assert float(lon) == pytest.approx(122.99395597, abs=1e-5)
    assert float(lat) == pytest.approx(44.99804071, abs=1e-5)


def test_published_one_step_inverse_is_close_but_ours_is_exact() -> None:
    one_step = (116.39775550083061, 39.91359571849836)  # coordtransform gcj02towgs84
    lon, lat = crs.gcj02_to_wgs84(116.404, 39.915)
    assert 0.001 < _dist_m(lon, lat, *one_step) < 2.0
    fwd_ours = crs.wgs84_to_gcj02(lon, lat)
    fwd_one = crs.wgs84_to_gcj02(*one_step)
    assert _dist_m(*fwd_ours, 116.404, 39.915) < 1e-6
    assert _dist_m(*fwd_one, 116.404, 39.915) > 0.001


def test_bd09_matches_published_pairs() -> None:
    lon, lat = crs.gcj02_to_bd09(116.404, 39.915)
    assert float(lon) == pytest.approx(116.41036949371029, abs=1e-11)
    assert float(lat) == pytest.approx(39.92133699351021, abs=1e-11)
    lon, lat = crs.gcj02_to_bd09(123.0, 45.0)
    assert float(lon) == pytest.approx(123.00636499, abs=1e-5)
    assert float(lat) == pytest.approx(45.00636899, abs=1e-5)
    # coordtransform's one-step bd09togcj02 is within a few cm of our iterated inverse
    lon, lat = crs.bd09_to_gcj02(116.404, 39.915)
    assert _dist_m(lon, lat, 116.39762729119315, 39.90865673957631) < 0.1
    # and ours inverts the forward exactly
    lon, lat = crs.bd09_to_gcj02(116.41036949371029, 39.92133699351021)
    assert _dist_m(lon, lat, 116.404, 39.915) < 1e-6


def test_forward_equals_eviltransform_across_china(china_points) -> None:
    lon, lat = china_points
    ours_lon, ours_lat = crs.wgs84_to_gcj02(lon, lat)
    theirs = np.array(
        [eviltransform.wgs2gcj(float(a), float(o)) for a, o in zip(lat, lon, strict=True)]
    )
    gap = _dist_m(ours_lon, ours_lat, theirs[:, 1], theirs[:, 0])
    assert gap.max() < 0.05
    shift = _dist_m(lon, lat, ours_lon, ours_lat)
    assert shift.min() > 20 and np.median(shift) > 200  # tens to hundreds of metres


def test_iterative_inverse_round_trips_and_beats_one_step(china_points) -> None:
    lon, lat = china_points
    gcj_lon, gcj_lat = crs.wgs84_to_gcj02(lon, lat)
    back_lon, back_lat = crs.gcj02_to_wgs84(gcj_lon, gcj_lat)
    ours = _dist_m(lon, lat, back_lon, back_lat)
    assert ours.max() < 0.01
    one = np.array(
        [eviltransform.gcj2wgs(float(a), float(o)) for a, o in zip(gcj_lat, gcj_lon, strict=True)]
    )
    one_step = _dist_m(lon, lat, one[:, 1], one[:, 0])
    assert np.median(one_step) > 0.1  # the one-step inverse is off by decimetres to metres
    assert one_step.max() > 1.0
    assert (ours < one_step).mean() > 0.99
    exact = np.array(
        [
            eviltransform.gcj2wgs_exact(float(a), float(o))
            for a, o in zip(gcj_lat, gcj_lon, strict=True)
        ]
    )
    # eviltransform's bisection stops at 1e-6 degrees (~0.1 m): we agree to that precision
    assert _dist_m(back_lon, back_lat, exact[:, 1], exact[:, 0]).max() < 0.5


def test_bd09_both_directions_against_eviltransform(china_points) -> None:
    lon, lat = china_points
    bd_lon, bd_lat = crs.wgs84_to_bd09(lon, lat)
    theirs = np.array(
        [eviltransform.wgs2bd(float(a), float(o)) for a, o in zip(lat, lon, strict=True)]
    )
    assert _dist_m(bd_lon, bd_lat, theirs[:, 1], theirs[:, 0]).max() < 0.05
    back_lon, back_lat = crs.bd09_to_wgs84(bd_lon, bd_lat)
    assert _dist_m(lon, lat, back_lon, back_lat).max() < 0.01
    gcj_lon, gcj_lat = crs.bd09_to_gcj02(bd_lon, bd_lat)
    their_gcj = np.array(
        [eviltransform.bd2gcj(float(a), float(o)) for a, o in zip(bd_lat, bd_lon, strict=True)]
    )
    assert _dist_m(gcj_lon, gcj_lat, their_gcj[:, 1], their_gcj[:, 0]).max() < 0.5


def test_outside_china_is_unchanged() -> None:
    lon, lat = crs.wgs84_to_gcj02(np.array([2.35, -74.0]), np.array([48.85, 40.7]))
    np.testing.assert_array_equal(lon, [2.35, -74.0])
    np.testing.assert_array_equal(lat, [48.85, 40.7])


def test_to_wgs84_converts_geometries_and_leaves_input_alone() -> None:
    gdf = gpd.GeoDataFrame(
        {"id": ["a"]}, geometry=[shapely.LineString([(125.33, 43.88), (125.34, 43.89)])]
    )
    before = gdf.copy()
    out = crs.to_wgs84(gdf, "GCJ-02")
    assert out.crs.to_epsg() == 4326
    expected = np.column_stack(crs.gcj02_to_wgs84(np.array([125.33, 125.34]), [43.88, 43.89]))
    np.testing.assert_allclose(shapely.get_coordinates(out.geometry.values), expected)
    assert gdf.equals(before) and gdf.crs is None
    cgcs = gpd.GeoDataFrame(geometry=[shapely.Point(125.33, 43.88)], crs=crs.CGCS2000)
    assert crs.to_wgs84(cgcs).geometry.iloc[0].equals_exact(shapely.Point(125.33, 43.88), 1e-9)


def test_normalize_crs_aliases_and_errors() -> None:
    assert crs.normalize_crs("gcj02") == crs.GCJ02
    assert crs.normalize_crs("Baidu") == crs.BD09
    assert crs.normalize_crs("EPSG:4490").to_epsg() == 4490
    with pytest.raises(CRSError, match="missing"):
        crs.normalize_crs(None)
    with pytest.raises(CRSError, match="unknown CRS 'mars'"):
        crs.normalize_crs("mars")


def test_working_crs_is_cgcs2000_gauss_kruger_cm126_for_changchun() -> None:
    working = crs.working_crs(125.33, 43.88)
    assert working.to_epsg() == 4551
    assert "126E" in working.name and "CGCS2000" in working.name
    # independent check: the projection's central meridian parameter
    params = {p.name: p.value for p in working.coordinate_operation.params}
    assert params["Longitude of natural origin"] == 126.0
    assert params["False easting"] == 500000.0
    assert crs.working_crs(116.4, 39.9).name.endswith("CM 117E")  # Beijing
    assert crs.working_crs(113.9, 22.5).name.endswith("CM 114E")  # Shenzhen
    with pytest.raises(CRSError, match="lon must be within China"):
        crs.working_crs(2.35, 48.85)


def test_ensure_same_crs_names_both_layers() -> None:
    a = gpd.GeoDataFrame(geometry=[shapely.Point(125.3, 43.8)], crs="EPSG:4326")
    b = a.to_crs(4551)
    crs.ensure_same_crs(shelters=a, roads=a.copy())
    with pytest.raises(CRSMismatchError) as info:
        crs.ensure_same_crs(shelters=a, roads=b)
    message = str(info.value)
    assert "'shelters'" in message and "'roads'" in message
    assert "EPSG:4326" in message and "EPSG:4551" in message


@pytest.mark.parametrize(
    ("source", "target"),
    [("EPSG:4326", "EPSG:4551"), ("EPSG:4490", "EPSG:4549"), ("EPSG:4326", "EPSG:32651")],
)
def test_fast_point_transform_matches_exact_across_a_zone(source: str, target: str) -> None:
    """The fast (approx transverse Mercator) transform, whichever form it takes, agrees with
    pyproj's exact transformer to a micrometre over a whole zone; in a Gauss-Kruger zone it
    marks points it cannot project (another continent, NaN) as non-finite, which is how the
    engine tells them from points it can snap."""
    from pyproj import Transformer

    fast = crs.point_transform(source, target, fast=True)
    exact = Transformer.from_crs(source, target, always_xy=True)
    cm = {"EPSG:4551": 126.0, "EPSG:4549": 120.0, "EPSG:32651": 123.0}[target]
    rng = np.random.default_rng(7)
    lon, lat = rng.uniform(cm - 1.5, cm + 1.5, 500), rng.uniform(20.0, 53.0, 500)
    got, want = np.column_stack(fast(lon, lat)), np.column_stack(exact.transform(lon, lat))
    assert np.abs(got - want).max() < 1e-6
    far = (np.array([-100.0, np.nan]), np.array([40.0, np.nan]))
    if target != "EPSG:32651":  # (UTM's exact transformer projects the far point)
        assert not np.isfinite(np.column_stack(fast(*far))).any()
