"""Workflows, parameters defined once, and the layering rule checked at run time.

The coverage workflow must give the same numbers whichever entry point calls it (frames read
from the catalog, or the store behind the API); the CLI must run without the web stack.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from geo_minzheng import coverage, engine, kinds, params, workflows
from geo_minzheng.catalog import load_catalog
from geo_minzheng.settings import Settings
from tests.conftest import ROOT

CORE = ROOT / "geo_minzheng"


# --------------------------------------------------------------------------------------------
# One definition of each parameter
# --------------------------------------------------------------------------------------------


def test_breaks_have_one_rule() -> None:
    assert params.check_breaks_min([15, 5, 10, 5]) == (5.0, 10.0, 15.0)
    assert params.parse_breaks_min("5, 10,15") == (5.0, 10.0, 15.0)
    for bad in ([], [0], [-5], [61], [float("nan")], [float("inf")], [1, 2, 3, 4, 5, 6, 7]):
        with pytest.raises(ValueError, match=r"breaks must be minutes in \(0, 60\]"):
            params.check_breaks_min(bad)
    with pytest.raises(ValueError, match="--breaks got '5,abc'"):
        params.parse_breaks_min("5,abc")
    assert params.breaks_to_s([5, 15]) == [300.0, 900.0]
    assert params.s_to_minutes(900.0) == 15.0


def test_speed_and_profile_rules() -> None:
    assert params.check_walk_speed_mps("1.2") == 1.2
    for bad in (0, -1, 0.1, 5, float("nan"), "fast"):
        with pytest.raises(ValueError, match="walk_speed_mps must be metres per second"):
            params.check_walk_speed_mps(bad)
    with pytest.raises(ValueError, match="profile must be 'walk' or 'drive', got 'bike'"):
        params.check_profile("bike")
    with pytest.raises(ValueError, match="walk_speed_mps"):
        workflows.NetworkParams(walk_speed_mps=0)


def test_no_second_definition_of_the_defaults() -> None:
    """The default breaks and speeds are written once, in params (not as literals elsewhere)."""
    offenders = []
    for path in [
        *CORE.rglob("*.py"),
        *(ROOT / "api").rglob("*.py"),
        *(ROOT / "maps").rglob("*.py"),
    ]:
        if path.name == "params.py":
            continue
        text = path.read_text(encoding="utf-8")
        for literal in ("(5, 10, 15)", "[5, 10, 15]", '5,10,15"', "= 0.91", "* 60.0", "/ 60.0"):
            if literal in text:
                offenders.append(f"{path.relative_to(ROOT)}: {literal}")
    assert offenders == []


def test_settings_read_a_dotenv_file_and_the_environment_wins(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in (
        "GEO_MINZHENG_WALK_SPEED_MPS",
        "GEO_MINZHENG_NETWORK_PROFILE",
        "GEO_MINZHENG_LANG",
    ):
        monkeypatch.delenv(name, raising=False)
    assert Settings().walk_speed_mps == params.ELDERLY_WALK_SPEED_MPS
    (tmp_path / ".env").write_text(
        "GEO_MINZHENG_WALK_SPEED_MPS=1.07\nGEO_MINZHENG_LANG=en\n", encoding="utf-8"
    )
    settings = Settings()
    assert (settings.walk_speed_mps, settings.lang) == (1.07, "en")
    monkeypatch.setenv("GEO_MINZHENG_LANG", "zh")
    assert Settings().lang == "zh"
    monkeypatch.setenv("GEO_MINZHENG_WALK_SPEED_MPS", "9")
    with pytest.raises(ValueError, match="GEO_MINZHENG_WALK_SPEED_MPS"):
        Settings()


# --------------------------------------------------------------------------------------------
# The open-facility rule and the coverage workflow
# --------------------------------------------------------------------------------------------


def test_in_service_keeps_open_full_and_unknown_status() -> None:
    frame = pd.DataFrame(
        {"id": list("abcde"), "status": ["open", "full", None, "closed", "planned"]}
    )
    assert list(kinds.in_service(frame)["id"]) == ["a", "b", "c"]
    no_status = frame.drop(columns="status")
    assert kinds.in_service(no_status) is no_status


@pytest.fixture(scope="module")
def catalog_layers() -> workflows.FrameLayers:
    catalog = load_catalog(ROOT / "layers" / "catalog.yml")
    return workflows.FrameLayers(catalog.read_all(validate=False))


@pytest.fixture(scope="module")
def walk_engine(catalog_layers) -> engine.Engine:
    return workflows.engine_for(workflows.road_network(catalog_layers))


def test_coverage_workflow_equals_the_analysis_it_wraps(catalog_layers, walk_engine) -> None:
    """The workflow picks the layers and the open rule; the numbers are coverage.analyze's."""
    run = workflows.run_coverage(catalog_layers, walk_engine, workflows.CoverageParams())
    frames = catalog_layers.frames
    care, rooms = frames["eldercare"], frames["service_rooms"]
    expected_kinds = sorted(care.loc[care["status"].isin(["open", "full"]), "category"].unique())
    assert sorted(k for k in run.facilities if k != "community_service_room") == expected_kinds
    closed = set(care.loc[care["status"].isin(["closed", "planned"]), "id"])
    assert closed and not closed & {i for f in run.facilities.values() for i in f["id"]}
    direct = coverage.analyze(
        frames["demand"],
        coverage.facility_kinds(care, rooms, categories=None),
        walk_engine,
        gdf_units=frames["districts"],
    )
    pd.testing.assert_frame_equal(run.result.table, direct.table)
    # siting proposes new home-care centres within the largest break, among the rooms
    assert run.sites is not None and len(run.sites.sites) == params.DEFAULT_NEW_SITES
    assert run.sites.provenance["break_min"] == max(params.DEFAULT_BREAKS_MIN)
    assert run.compliance is not None and set(run.compliance["unit"]) <= set(
        frames["districts"]["adcode"]
    )
    # the map's bands come from the core, one dissolved ring per break
    areas = run.service_areas()
    assert list(areas["break_min"]) == list(params.DEFAULT_BREAKS_MIN)
    assert areas.crs.to_epsg() == 4326 and areas.geometry.is_valid.all()


def test_workflow_names_missing_layers_and_bad_parameters(catalog_layers, walk_engine) -> None:
    with pytest.raises(ValueError, match="layer 'roads' is of kind 'road'; expected demand"):
        workflows.run_coverage(
            catalog_layers, walk_engine, workflows.CoverageParams(demand_layer="roads")
        )
    with pytest.raises(ValueError, match="unknown eldercare categories"):
        workflows.CoverageParams(categories=("hospital",))
    with pytest.raises(ValueError, match="new_sites must be a whole number"):
        workflows.CoverageParams(new_sites=-1)
    empty = workflows.FrameLayers({})
    with pytest.raises(ValueError, match="no demand layer given"):
        workflows.run_coverage(empty, walk_engine)


# --------------------------------------------------------------------------------------------
# The layering rule, at run time and in the source
# --------------------------------------------------------------------------------------------


def _web_imports(path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            if name.split(".")[0] in {"maps", "api", "fastapi", "folium", "uvicorn"}:
                found.append(f"{path.name}:{node.lineno} imports {name}")
    return found


def test_the_core_never_imports_maps_or_api_even_inside_functions() -> None:
    """Only the CLI (the composition root) may assemble map steps and the web service."""
    offenders = [
        hit for path in CORE.rglob("*.py") if path.name != "cli.py" for hit in _web_imports(path)
    ]
    assert offenders == []


_BLOCK_WEB = textwrap.dedent(
    """
    import sys

    class BlockWeb:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("folium", "fastapi", "uvicorn", "starlette", "branca"):
                raise ImportError("blocked for this test: " + name)
            return None

    sys.meta_path.insert(0, BlockWeb())
    from geo_minzheng.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def _cli_without_web(tmp_path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _BLOCK_WEB, *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)},
    )


@pytest.mark.slow
def test_validate_and_coverage_run_where_folium_and_fastapi_cannot_be_imported(tmp_path) -> None:
    source = ROOT / "tests" / "data"
    good = next(source.rglob("*.geojson"), None)
    assert good is not None
    checked = _cli_without_web(tmp_path, "validate", "--kind", "road", str(good))
    assert "Traceback" not in checked.stderr, checked.stderr
    assert checked.returncode in (0, 1), checked.stderr
    out = tmp_path / "cov"
    done = _cli_without_web(tmp_path, "coverage", "--out", str(out), "--sites", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "跳过地图输出" in done.stderr  # the map step was left out, and it says so
    table = pd.read_csv(out / "coverage_table.csv", encoding="utf-8-sig")
    total = table[table["unit"] == "total"]
    assert set(total["break_min"]) == set(params.DEFAULT_BREAKS_MIN)
    assert np.all((total["share_aged_60_plus"] >= 0) & (total["share_aged_60_plus"] <= 1))
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert len(summary["coverage"]["siting"]["chosen"]) == 2
    assert not (out / "coverage_map.html").exists()
