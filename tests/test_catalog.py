"""The layer catalog: loading, interpolation, relative paths, errors naming entry and field."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pytest
import shapely
from conftest import CHANGCHUN, DEMO_DATA, ROOT

from geo_minzheng import io
from geo_minzheng._errors import CatalogError, LayerValidationError, UnknownIdError
from geo_minzheng.catalog import Catalog, load_catalog
from geo_minzheng.kinds import DEMO_SCENARIO_LABEL
from geo_minzheng.validation import check_alignment

DEMO_IDS = ["districts", "roads", "demand", "eldercare", "service_rooms", "shelters", "depots",
            "markers"]  # fmt: skip
SCENARIO_IDS = {"demand", "eldercare", "service_rooms", "shelters", "depots", "markers"}


def _shelters() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {
            "id": ["S-001", "S-002"],
            "name": ["人民广场", "南湖公园"],
            "shelter_class": ["emergency", "fixed_long"],
            "effective_area_m2": [8000.0, 250000.0],
        },
        geometry=gpd.points_from_xy([125.3245, 125.3078], [43.8868, 43.8498]),
        crs="EPSG:4326",
    )


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A folder with a small GeoPackage (real OSM roads, hand-made shelters) and a GBK CSV."""
    folder = tmp_path / "layers" / "mydata"
    roads = gpd.read_file(CHANGCHUN / "roads_osm.geojson").iloc[:50]
    roads = roads.assign(id=roads["osm_id"].astype(str))
    io.write_gpkg({"roads": roads, "shelters": _shelters()}, folder / "city.gpkg")
    csv = "序号,机构名称,类别,床位数,经度,纬度\nE1,南关区社会福利院,养老机构,320,125.332,43.876\n"
    (folder / "eldercare.csv").write_bytes(csv.encode("gbk"))
    return folder


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


CATALOG = """
title_zh: 测试目录
title_en: Test catalog
layers:
  roads:
    kind: road
    title_zh: 道路
    title_en: Roads
    source: ${MY_DATA:-mydata}/city.gpkg
    style: {color: "#888888", weight: 1}
  shelters:
    kind: shelter
    title_zh: 避难场所
    title_en: Shelters
    source: ${MY_DATA:-mydata}/city.gpkg
    scenario: true
    editable: true
    editable_fields: [status]
    style: {color: "#1a9641", radius: 8, icon: shield}
  eldercare:
    kind: eldercare_center
    title_zh: 养老机构
    title_en: Eldercare
    source: mydata/eldercare.csv
    fields: {id: 序号}
    encoding: gbk
"""


def test_load_and_read(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(data_dir.parent / "catalog.yml", CATALOG)
    monkeypatch.chdir(tmp_path)  # sources resolve against the catalog's folder, not the cwd
    catalog = load_catalog(path, env={})
    assert isinstance(catalog, Catalog)
    assert list(catalog.entries) == ["roads", "shelters", "eldercare"]
    assert catalog.title_zh == "测试目录"
    shelters = catalog.entries["shelters"]
    assert shelters.source == data_dir / "city.gpkg"
    assert shelters.layer == "shelters"  # GeoPackage layer defaults to the entry ID
    assert shelters.id_field == "id" and shelters.name_field == "name"
    assert shelters.editable and shelters.editable_fields == ["status"] and shelters.scenario
    assert shelters.style.color == "#1a9641" and shelters.style.radius == 8
    assert catalog.entries["roads"].style.fill_opacity == 0.4  # default
    gdf = catalog.read("shelters")
    assert gdf["id"].tolist() == ["S-001", "S-002"] and gdf.crs.to_epsg() == 4326
    assert gdf.attrs["layer"] == "shelters" and gdf.attrs["title_zh"] == "避难场所"
    eldercare = catalog.read("eldercare")
    assert eldercare["id"].tolist() == ["E1"] and eldercare["beds"].tolist() == [320]
    assert eldercare["category"].tolist() == ["nursing_home"]
    layers = catalog.read_all()
    assert list(layers) == ["roads", "shelters", "eldercare"] and len(layers["roads"]) == 50


def test_environment_interpolation(data_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    io.write_gpkg({"roads": gpd.read_file(data_dir / "city.gpkg", layer="roads").iloc[:3],
                   "shelters": _shelters()}, other / "city.gpkg")  # fmt: skip
    path = _write(data_dir.parent / "catalog.yml", CATALOG)
    catalog = load_catalog(path, env={"MY_DATA": str(other)})
    assert catalog.entries["roads"].source == other / "city.gpkg"
    assert len(catalog.read("roads")) == 3
    # an empty variable counts as unset, so the default applies
    assert load_catalog(path, env={"MY_DATA": ""}).entries["roads"].source == (
        data_dir / "city.gpkg"
    )


def test_unset_variable_without_default(data_dir: Path) -> None:
    text = CATALOG.replace("${MY_DATA:-mydata}/city.gpkg", "${CITY_DATA}/city.gpkg", 1)
    path = _write(data_dir.parent / "catalog.yml", text)
    with pytest.raises(CatalogError) as info:
        load_catalog(path, env={})
    message = str(info.value)
    assert "'roads'" in message and "'source'" in message and "CITY_DATA" in message
    assert load_catalog(path, env={"CITY_DATA": str(data_dir)}).entries["roads"].source == (
        data_dir / "city.gpkg"
    )


@pytest.mark.parametrize(
    ("old", "new", "entry", "field", "detail"),
    [
        ("kind: shelter", "kind: refuge", "shelters", "kind", "shelter, supply_depot"),
        ("mydata/eldercare.csv", "mydata/nope.csv", "eldercare", "source", "nope.csv"),
        ('color: "#1a9641"', 'color: "green-ish"', "shelters", "style.color", "'green-ish'"),
        ("editable_fields: [status]", "editable_fields: [beds]", "shelters", "", "'beds'"),
        ("scenario: true\n    editable: true\n", "scenario: true\n", "shelters", "", "editable"),
        ("fields: {id: 序号}", "fields: {serial: 序号}", "eldercare", "", "'serial'"),
        ("    encoding: gbk", "    encoding: gbk\n    colour: red", "eldercare", "colour", "Extra"),
    ],
)
def test_errors_name_entry_and_field(
    data_dir: Path, old: str, new: str, entry: str, field: str, detail: str
) -> None:
    assert old in CATALOG
    path = _write(data_dir.parent / "catalog.yml", CATALOG.replace(old, new, 1))
    with pytest.raises(CatalogError) as info:
        load_catalog(path, env={})
    message = str(info.value)
    assert f"catalog entry '{entry}'" in message
    if field:
        assert f"field '{field}'" in message
    assert detail in message


def test_missing_geopackage_layer(data_dir: Path) -> None:
    text = CATALOG.replace("    scenario: true\n", "    layer: refuges\n    scenario: true\n", 1)
    path = _write(data_dir.parent / "catalog.yml", text)
    with pytest.raises(CatalogError, match="'shelters': field 'layer'.*has no layer 'refuges'"):
        load_catalog(path, env={})


def test_unknown_layer_id_lists_known(data_dir: Path) -> None:
    catalog = load_catalog(_write(data_dir.parent / "catalog.yml", CATALOG), env={})
    with pytest.raises(UnknownIdError, match="unknown layer 'parks'.*roads, shelters, eldercare"):
        catalog.read("parks")


def test_invalid_source_data_raises_on_read(data_dir: Path) -> None:
    bad = _shelters().assign(effective_area_m2=[8000.0, -1.0])
    bad.loc[0, "geometry"] = shapely.Point(43.8868, 125.3245)
    io.write_gpkg({"shelters": bad}, data_dir / "city.gpkg")
    catalog = load_catalog(_write(data_dir.parent / "catalog.yml", CATALOG), env={})
    with pytest.raises(LayerValidationError) as info:
        catalog.read("shelters")
    assert {p.code for p in info.value.problems} == {"out_of_range", "swapped_lonlat"}
    assert len(catalog.read("shelters", validate=False)) == 2


def test_not_a_catalog(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="not found"):
        load_catalog(tmp_path / "missing.yml")
    with pytest.raises(CatalogError, match="top-level 'layers:'"):
        load_catalog(_write(tmp_path / "c.yml", "- just\n- a list\n"))
    with pytest.raises(CatalogError, match="not valid YAML"):
        load_catalog(_write(tmp_path / "d.yml", "layers: {a: [\n"))


def test_demo_catalog_entries() -> None:
    catalog = load_catalog(ROOT / "layers" / "catalog.yml", env={}, check_sources=False)
    assert list(catalog.entries) == DEMO_IDS
    for layer_id, entry in catalog.entries.items():
        assert entry.source == DEMO_DATA / "changchun_demo.gpkg"
        assert entry.layer == layer_id
        assert entry.scenario == (layer_id in SCENARIO_IDS)
        assert entry.title_zh and entry.title_en
    colours = [e.style.color for e in catalog.entries.values()]
    assert len(set(colours)) == len(colours)
    editable = {k: e.editable_fields for k, e in catalog.entries.items() if e.editable}
    assert editable["markers"] == ["status", "last_inspected"]
    assert editable["shelters"] == ["status"]
    assert all(f.startswith("stock_") for f in editable["depots"]) and len(editable["depots"]) == 6
    assert catalog.entries["districts"].id_field == "adcode"


def test_real_demo_catalog_reads() -> None:
    if not (DEMO_DATA / "changchun_demo.gpkg").exists():
        pytest.skip("layers/data/changchun_demo.gpkg not built yet (geo-minzheng demo)")
    catalog = load_catalog(ROOT / "layers" / "catalog.yml", env={})
    layers = catalog.read_all()
    assert list(layers) == DEMO_IDS
    assert len(layers["roads"]) == 1253
    codes = {p.stem for p in (CHANGCHUN / "districts_gcj02").glob("2201*.geojson")} - {"220100"}
    assert set(layers["districts"]["adcode"]) <= codes
    # the demo districts were converted from GCJ-02: they line up with the OSM roads
    assert check_alignment(layers["districts"], layers["roads"], layer="districts") == []
    for layer_id, gdf in layers.items():
        assert gdf.crs.to_epsg() == 4326, layer_id
        assert len(gdf) > 0, layer_id
        if layer_id in SCENARIO_IDS:
            assert (gdf["source"] == DEMO_SCENARIO_LABEL).all(), layer_id
