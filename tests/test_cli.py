"""The geo-minzheng command: validate exit codes and reports (zh/en), argument handling."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from geo_minzheng import cli, io, scenario
from tests.conftest import DEMO_DATA, ROOT

#: A bureau's eldercare register exported from Excel as GBK CSV, with five planted problems:
#: EC-2 negative beds, EC-3 an unknown category, a second EC-3 (duplicate ID) with zero floor
#: area, and EC-5 with longitude and latitude swapped. EC-1 is clean.
BAD_ELDERCARE_CSV = (
    "编号,名称,类别,床位数,建筑面积,经度,纬度\n"
    "EC-1,甲养老院,养老机构,120,3600,125.33,43.88\n"
    "EC-2,乙照料中心,日间照料中心,-5,300,125.34,43.89\n"
    "EC-3,丙助餐点,食堂,0,80,125.35,43.87\n"
    "EC-3,丁中心,居家养老服务中心,10,0,125.32,43.90\n"
    "EC-5,戊中心,助餐点,0,60,43.88,125.33\n"
)


@pytest.fixture
def bad_csv(tmp_path):
    path = tmp_path / "养老机构登记.csv"
    path.write_bytes(BAD_ELDERCARE_CSV.encode("gbk"))
    return path


@pytest.fixture(autouse=True)
def _no_lang_env(monkeypatch):
    monkeypatch.delenv("GEO_MINZHENG_LANG", raising=False)


def test_validate_bad_file_exits_1_and_reports_every_problem_in_chinese(bad_csv, capsys) -> None:
    code = cli.main(["validate", "--kind", "eldercare_center", str(bad_csv)])
    out = capsys.readouterr().out
    assert code == 1
    assert "未通过校验" in out
    assert "发现 5 个问题" in out
    problems = [line for line in out.splitlines() if line.startswith("  - ")]
    assert len(problems) == 5
    assert any("'EC-2'" in p and "床位数" in p and "-5" in p for p in problems)
    assert any("'EC-3'" in p and "类别" in p and "食堂" in p for p in problems)
    assert any("'EC-3'" in p and "建筑面积" in p for p in problems)
    # the two CSV rows holding EC-3 (header is row 1): rows 4 and 5
    assert any("编号重复" in p and re.search(r"4\D+5", p) for p in problems)
    assert any("'EC-5'" in p and "经纬度疑似颠倒" in p for p in problems)
    assert not any("'EC-1'" in p for p in problems)


def test_validate_lang_en_and_env_give_english(bad_csv, capsys, monkeypatch) -> None:
    code = cli.main(["validate", "--kind", "eldercare_center", str(bad_csv), "--lang", "en"])
    out = capsys.readouterr().out
    assert code == 1
    assert "is not a valid Eldercare facility layer" in out
    assert "5 problem(s) found" in out
    assert "beds must be >= 0" in out
    assert "swapped" in out
    assert "未通过" not in out
    monkeypatch.setenv("GEO_MINZHENG_LANG", "en")
    assert cli.main(["validate", "--kind", "eldercare_center", str(bad_csv)]) == 1
    assert "5 problem(s) found" in capsys.readouterr().out


def test_validate_clean_files_exit_0(tmp_path, capsys) -> None:
    layers = scenario.build_scenario()
    path = io.write_geojson(layers["eldercare"], tmp_path / "eldercare.geojson")
    assert cli.main(["validate", "--kind", "eldercare_center", str(path)]) == 0
    assert "校验通过" in capsys.readouterr().out
    gpkg = DEMO_DATA / "changchun_demo.gpkg"
    code = cli.main(
        ["validate", "--kind", "shelter", str(gpkg), "--layer", "shelters", "--lang", "en"]
    )
    assert code == 0
    assert "is a valid Emergency shelter layer" in capsys.readouterr().out


def test_validate_wrong_layer_names_missing_required_fields(capsys) -> None:
    gpkg = DEMO_DATA / "changchun_demo.gpkg"
    code = cli.main(["validate", "--kind", "shelter", str(gpkg), "--layer", "eldercare"])
    out = capsys.readouterr().out
    assert code == 1
    assert "shelter_class" in out and "effective_area_m2" in out
    assert "发现 2 个问题" in out


def test_validate_shapefile_without_prj_needs_source_crs(tmp_path, capsys) -> None:
    """A shapefile with no .prj (Amap/GCJ-02 coordinates) is unreadable until --source-crs."""
    import pyogrio

    from geo_minzheng import crs

    markers = scenario.build_scenario()["markers"]
    shifted = crs.from_wgs84(markers, "GCJ-02")
    path = tmp_path / "界桩.shp"
    pyogrio.write_dataframe(
        # marker_type has 11 characters: a .dbf field name holds 10 (GDAL would launder it)
        shifted.drop(columns=["installed_year", "last_inspected", "marker_type"]).set_crs(
            "EPSG:4326"
        ),
        path,
    )
    path.with_suffix(".prj").unlink()
    assert cli.main(["validate", "--kind", "boundary_marker", str(path)]) == 2
    assert "source_crs" in capsys.readouterr().err
    args = ["validate", "--kind", "boundary_marker", str(path), "--source-crs", "GCJ-02"]
    assert cli.main(args) == 0
    assert "校验通过" in capsys.readouterr().out


def test_usage_errors_exit_2(tmp_path, capsys) -> None:
    assert cli.main(["validate", "--kind", "shelter", str(tmp_path / "missing.csv")]) == 2
    assert "找不到文件" in capsys.readouterr().err
    assert cli.main(["validate", "--kind", "no_such_kind", str(tmp_path / "x.csv")]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert cli.main([]) == 2
    assert cli.main(["--help"]) == 0
    assert "民政" in capsys.readouterr().out
    assert cli.main(["demo", "--help", "--lang", "en"]) == 0
    assert "Output folder" in capsys.readouterr().out


def test_serve_hands_the_demo_catalog_to_the_api(monkeypatch, capsys) -> None:
    """`serve` hands the demo catalog to the API's worker processes and runs them in uvicorn.

    (Issue 15: the workers import the app factory and read their settings from the
    environment, so the catalog reaches them as GEO_MINZHENG_CATALOG.)
    """
    import os

    import uvicorn

    from api import app as api_app
    from geo_minzheng import demo

    calls, prepared = [], []
    monkeypatch.setattr(os, "environ", dict(os.environ))  # serve exports settings: keep them here
    monkeypatch.delenv("GEO_MINZHENG_CATALOG", raising=False)
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    monkeypatch.setattr(api_app, "prepare_store", prepared.append)
    assert cli.main(["serve", "--port", "8123", "--lang", "en"]) == 0
    ((app, kwargs),) = calls
    assert app == "api.app:create_app" and kwargs["factory"] is True
    assert (kwargs["host"], kwargs["port"]) == ("127.0.0.1", 8123)
    assert "http://127.0.0.1:8123/" in capsys.readouterr().out
    assert demo.default_catalog() == ROOT / "layers" / "catalog.yml"
    assert prepared[0].catalog == demo.default_catalog()
    assert os.environ["GEO_MINZHENG_CATALOG"] == str(demo.default_catalog())


def test_console_script_runs_as_a_process(bad_csv) -> None:
    """`python -m geo_minzheng.cli` runs like the console script, exit code included."""
    proc = subprocess.run(
        [sys.executable, "-m", "geo_minzheng.cli", "validate", "--kind", "eldercare_center",
         str(bad_csv), "--lang", "en"],
        capture_output=True, text=True, cwd=ROOT, check=False, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "5 problem(s) found" in proc.stdout


def test_core_cli_imports_no_web_stack() -> None:
    code = (
        "import sys, geo_minzheng.cli, geo_minzheng.demo, geo_minzheng.scenario;"
        "import json; print(json.dumps([m for m in ('fastapi', 'folium', 'uvicorn', 'maps', 'api')"
        " if m in sys.modules]))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert json.loads(proc.stdout) == []


# --------------------------------------------------------------------------------------------
# Files no reader can read: one line naming the file, exit 1, no traceback, from every verb
# --------------------------------------------------------------------------------------------

DISTRICT = DEMO_DATA / "changchun" / "districts_gcj02" / "220102.geojson"


def _bad_files(folder) -> dict[str, tuple[object, str]]:
    """Each kind of unreadable file the issue lists, with the Chinese words that must explain it."""
    import numpy as np

    folder.mkdir(exist_ok=True)
    garbage = np.random.default_rng(15).bytes(4096)
    district = DISTRICT.read_bytes()
    files = {
        "truncated.geojson": (district[:30000], "内容不完整"),
        "malformed.geojson": (district.replace(b'"type"', b"'type'", 1), "不是有效的 JSON"),
        "empty.csv": (b"", "文件是空的（0 字节）"),
        "bom.csv": (b"\xef\xbb\xbf", "只有字节顺序标记（BOM）"),
        "register.csv": (BAD_ELDERCARE_CSV.encode("gbk") + b"EC-6,\xff\xfe\n", "文本编码无法识别"),
        "garbage.gpkg": (garbage, "不是有效的 GeoPackage 文件"),
        "garbage.xlsx": (garbage, "不是有效的 Excel (.xlsx) 文件"),
    }
    out = {}
    for name, (data, words) in files.items():
        (folder / name).write_bytes(data)
        out[name] = (folder / name, words)
    (folder / "a folder.geojson").mkdir(exist_ok=True)
    out["a folder.geojson"] = (folder / "a folder.geojson", "这是一个文件夹，不是文件")
    return out


def _run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith("GEO_MINZHENG_")}
    return subprocess.Popen(
        [sys.executable, "-m", "geo_minzheng.cli", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**base, **(env or {})},
    )  # fmt: skip


def _finish(proc: subprocess.Popen, timeout_s: float = 180) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the command did not stop: {proc.args}\n{out}\n{err}")
    return proc.returncode, out, err


def _one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_validate_unreadable_files_one_line_exit_1_in_a_process(tmp_path) -> None:
    """The issue's bad files, each through the real console entry point (no traceback)."""
    files = _bad_files(tmp_path / "bad")
    procs = {
        name: _run_cli("validate", "--kind", "eldercare_center", str(path))
        for name, (path, _) in files.items()
    }
    for name, proc in procs.items():
        path, words = files[name]
        code, out, err = _finish(proc)
        assert code == 1, (name, out, err)
        line = _one_line(err)
        assert line.startswith(f"无法读取文件 {path}："), line
        assert words in line, (name, line)
        assert out == ""


def test_validate_unreadable_file_in_english(tmp_path) -> None:
    files = _bad_files(tmp_path / "bad")
    path, _ = files["truncated.geojson"]
    code, out, err = _finish(
        _run_cli("validate", "--kind", "admin_unit", str(path), "--lang", "en")
    )
    assert code == 1
    line = _one_line(err)
    assert line.startswith(f"Cannot read {path}: the file ends too early, at line ")
    assert "incomplete" in line


def test_validate_header_only_file_exits_1_with_no_records(tmp_path, capsys) -> None:
    path = tmp_path / "养老机构登记.csv"
    path.write_bytes(BAD_ELDERCARE_CSV.split("\n", 1)[0].encode("gbk") + b"\n")
    assert cli.main(["validate", "--kind", "eldercare_center", str(path)]) == 1
    out = capsys.readouterr().out
    assert "未通过校验" in out and "发现 1 个问题" in out
    assert "图层没有任何记录（0 条）" in out
    assert cli.main(["validate", "--kind", "eldercare_center", str(path), "--lang", "en"]) == 1
    assert "records must be at least one record" in capsys.readouterr().out


def test_every_verb_turns_an_unreadable_layer_into_one_line(tmp_path) -> None:
    """demo, coverage, shelters and serve read the catalog's files: a broken one is one line."""
    files = _bad_files(tmp_path / "bad")
    data = tmp_path / "data"
    data.mkdir()
    broken_gpkg = data / "changchun_demo.gpkg"  # the demo catalog's file, damaged
    broken_gpkg.write_bytes(files["garbage.gpkg"][0].read_bytes())
    env = {"GEO_MINZHENG_DATA": str(data)}
    # a bureau's catalog whose register is a BOM-only CSV
    catalog = tmp_path / "catalog.yml"
    catalog.write_text(
        "layers:\n  eldercare:\n    kind: eldercare_center\n    title_zh: 养老机构\n"
        f"    title_en: Eldercare\n    source: {files['bom.csv'][0]}\n",
        encoding="utf-8",
    )
    out_dir = str(tmp_path / "out")
    runs = {
        "demo": (("demo", "--out", out_dir), env, broken_gpkg, "不是有效的 GeoPackage 文件"),
        "coverage": (("coverage", "--out", out_dir), env, broken_gpkg, "不是有效的 GeoPackage"),
        "coverage --catalog": (
            ("coverage", "--out", out_dir, "--catalog", str(catalog)), {},
            files["bom.csv"][0], "只有字节顺序标记（BOM）",
        ),
        "shelters": (("shelters", "--out", out_dir), env, broken_gpkg, "不是有效的 GeoPackage"),
        "shelters --hazards": (
            ("shelters", "--out", out_dir, "--hazards", str(files["truncated.geojson"][0])), {},
            files["truncated.geojson"][0], "内容不完整",
        ),
        "serve": (
            ("serve", "--port", "8791"),
            {**env, "GEO_MINZHENG_STORE_URL": f"gpkg://{tmp_path / 'store.gpkg'}"},
            broken_gpkg, "不是有效的 GeoPackage",
        ),
    }  # fmt: skip
    procs = {name: _run_cli(*args, env=e) for name, (args, e, _, _) in runs.items()}
    for name, proc in procs.items():
        _, _, path, words = runs[name]
        code, _out, err = _finish(proc)
        assert code == 1, (name, err)
        line = _one_line(err)
        assert line.startswith(f"无法读取文件 {path}："), (name, line)
        assert words in line, (name, line)
