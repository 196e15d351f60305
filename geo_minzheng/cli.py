"""The ``geo-minzheng`` command: ``demo``, ``validate`` and ``serve``; analyses join as subcommands.

Messages are in Simplified Chinese by default and in English with ``--lang en`` or
``GEO_MINZHENG_LANG=en``. The web stack (FastAPI, uvicorn, folium) is imported only inside the
commands that need it, so ``validate`` runs on a machine without it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geo_minzheng import demo, params, workflows
from geo_minzheng._errors import (
    CatalogError,
    CRSError,
    GeoMinzhengError,
    LayerReadError,
    LayerValidationError,
    UnknownIdError,
)
from geo_minzheng.kinds import ADMIN_LEVELS, ELDERCARE_CATEGORIES, KINDS
from geo_minzheng.settings import Settings

if TYPE_CHECKING:
    import geopandas

LANGS = ("zh", "en")
#: Exit codes: 0 ok; 1 invalid or unreadable data (a layer file that cannot be read at all) or a
#: failed job; 2 bad usage (also a missing file, a file without a CRS, a broken catalog).
EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2

_MESSAGES = {
    "description": (
        "geo-minzheng：民政空间数据与路网分析（养老服务圈、避难场所、救灾物资、行政区划）",
        "geo-minzheng: civil-affairs layers and street-network analysis",
    ),
    "demo": ("运行长春演示：校验图层、构建路网、生成地图与汇总", "Run the Changchun demo"),
    "validate": ("校验一个图层文件", "Validate a layer file"),
    "serve": ("启动地图与数据服务（FastAPI）", "Start the map and data service (FastAPI)"),
    "lang": ("界面语言：zh（默认）或 en", "Message language: zh (default) or en"),
    "out": ("输出目录（默认 ./out）", "Output folder (default ./out)"),
    "catalog": (
        "图层目录文件（默认 layers/catalog.yml）",
        "Layer catalog (default layers/catalog.yml)",
    ),
    "kind": ("图层类型", "Layer kind"),
    "file": ("图层文件：GeoJSON、GeoPackage、Shapefile、CSV 或 XLSX", "Layer file"),
    "source_crs": (
        "文件坐标系，如 EPSG:4490、EPSG:4326、GCJ-02、BD-09",
        "CRS of the file, e.g. EPSG:4490, EPSG:4326, GCJ-02, BD-09",
    ),
    "layer": ("GeoPackage 图层名或 Excel 工作表名", "GeoPackage layer or workbook sheet"),
    "host": ("监听地址（默认 127.0.0.1）", "Host to listen on (default 127.0.0.1)"),
    "port": ("端口（默认 8000）", "Port (default 8000)"),
    "workers": (
        "服务进程数（默认：每个 CPU 一个）",
        "Worker processes (default: one per CPU)",
    ),
    "coverage": (
        "养老服务圈覆盖分析：覆盖率、缺口、达标情况与新增选址",
        "Eldercare service-circle coverage: shares, gaps, compliance and new sites",
    ),
    "breaks": (params.BREAKS_DESCRIPTION, params.BREAKS_DESCRIPTION),
    "categories": (
        "作为覆盖类型的养老设施类别（逗号分隔，默认：图层中的全部类别）",
        "Eldercare categories to cover, comma-separated (default: every category in the layer)",
    ),
    "profile": (params.PROFILE_DESCRIPTION, params.PROFILE_DESCRIPTION),
    "walk_speed": (params.WALK_SPEED_DESCRIPTION, params.WALK_SPEED_DESCRIPTION),
    "bad_option": ("参数错误：{error}", "Bad option: {error}"),
    "coverage_start": ("开始覆盖分析，输出目录：{out}", "Running the coverage analysis into {out}"),
    "no_maps": (
        "未安装地图组件（{error}），跳过地图输出",
        "The map package is not installed ({error}); no maps are drawn",
    ),
    "cov_kind": ("地图与选址所用的设施类型", "Facility kind to map and site"),
    "sites": ("新增选址数量 k（0 表示不选址）", "Number of new sites k (0: no siting)"),
    "coverage_done": (
        "覆盖分析完成，用时 {seconds:.1f} 秒。",
        "Coverage finished in {seconds:.1f} s.",
    ),
    "province": (
        "全省模式：省级图层文件（GeoPackage，每市一组图层；demo 表示生成演示省份），按区县分区在 "
        "Dask 上计算",
        "Province mode: a province GeoPackage (one set of layers per city; 'demo' builds the demo "
        "province), partitioned by county and run on Dask",
    ),
    "scheduler": (
        "Dask 调度器地址（如 tcp://10.0.0.5:8786）；不填则在本命令内启动本地集群"
        "（每个 CPU 一个进程）",
        "Dask scheduler address (e.g. tcp://10.0.0.5:8786); default a local cluster in this "
        "command, one worker process per CPU",
    ),
    "cov_workers": (
        "本地集群的工作进程数（默认：每个 CPU 一个）",
        "Worker processes of the local cluster (default: one per CPU)",
    ),
    "run_id": (
        "运行编号（a-z、0-9、_）；同一编号再次运行时跳过已完成的分区（续跑）",
        "Run ID (a-z, 0-9, _); running again with the same ID skips finished partitions (resume)",
    ),
    "results": (
        "结果写入 PostGIS（postgresql://…，每次运行一张结果表）；默认写入输出目录中的 GeoPackage",
        "Write results to PostGIS (postgresql://..., one result table per run); default a "
        "GeoPackage in the output folder",
    ),
    "province_start": (
        "开始全省覆盖分析：{cities} 个城市，运行编号 {run_id}，输出：{out}",
        "Running the province coverage: {cities} cities, run {run_id}, results in {out}",
    ),
    "province_done": (
        "全省覆盖分析完成：{cities} 个城市、{partitions} 个分区（续跑跳过 {resumed} 个）、"
        "{points} 个需求点，用时 {seconds:.1f} 秒；失败重试 {failures} 次。",
        "Province coverage finished: {cities} cities, {partitions} partitions ({resumed} resumed), "
        "{points} demand points in {seconds:.1f} s; {failures} failed tries retried.",
    ),
    "province_peak": (
        "各工作进程峰值内存：{peaks}",
        "Peak memory per worker: {peaks}",
    ),
    "output": ("{name}：{path}", "{name}: {path}"),
    "shelters": (
        "应急避难场所责任区：按容量与服务半径安置居民，报告无处安置者与灾害影响",
        "Shelter catchments within capacity and service radius; who has no place; hazards",
    ),
    "hazards": (
        "灾害影响区（面图层文件，如洪水淹没区）",
        "Hazard polygons (a layer file, e.g. a flooded area)",
    ),
    "closed_roads": ("封闭道路（点或线图层文件）", "Closed roads (a point or line layer file)"),
    "demo_flood": ("使用演示洪水情景（伊通河沿岸）", "Use the demo flood (Yitong river banks)"),
    "adult_speed": (
        f"60岁以下居民步行速度（米/秒，默认 {params.ADULT_WALK_SPEED_MPS}）",
        f"Walking speed under 60, m/s (default {params.ADULT_WALK_SPEED_MPS})",
    ),
    "elderly_speed": (
        f"60岁及以上居民步行速度（米/秒，默认 {params.ELDERLY_WALK_SPEED_MPS}）",
        f"Walking speed aged 60+, m/s (default {params.ELDERLY_WALK_SPEED_MPS})",
    ),
    "include_planned": ("规划中的避难场所也参与安置", "Let planned shelters take evacuees"),
    "region": (
        "固定避难场所人口比例标准的地区（默认 national）",
        "Region of the fixed-shelter share standard (default national)",
    ),
    "shelters_start": (
        "开始避难场所分析，输出目录：{out}",
        "Running the shelter analysis into {out}",
    ),
    "shelters_done": (
        "避难场所分析完成，用时 {seconds:.1f} 秒。",
        "Shelters finished in {seconds:.1f} s.",
    ),
    "boundaries": (
        "行政区域界线管理：界线、拓扑检查、界桩、到期联检、巡查路线与两图一责",
        "Administrative boundaries: lines, topology checks, markers, due inspections, "
        "inspection route and the two diagrams and responsibility table",
    ),
    "bd_level": ("只检查该层级（默认：图层中的全部层级）", "Only this admin level (default: all)"),
    "bd_sliver": (params.SLIVER_DESCRIPTION, params.SLIVER_DESCRIPTION),
    "bd_tolerance": (params.MARKER_TOLERANCE_DESCRIPTION, params.MARKER_TOLERANCE_DESCRIPTION),
    "bd_cycle": (params.CYCLE_DESCRIPTION, params.CYCLE_DESCRIPTION),
    "bd_as_of": (
        "以该日期判断是否到期（YYYY-MM-DD，默认今天）",
        "Day lines are due against, YYYY-MM-DD (default today)",
    ),
    "bd_route": (
        "为该界线规划巡查路线（界线编号，如 220102-220105；auto：界桩最多的界线；none：不规划）",
        "Plan an inspection route over this line (e.g. 220102-220105; auto: the line with the "
        "most markers; none: no route)",
    ),
    "bd_start": (
        "巡查起点 经度,纬度（WGS84，默认：该界线第一个界桩）",
        "Route start lon,lat (WGS84; default: the line's first marker)",
    ),
    "bd_return": ("巡查后返回起点", "Return to the start"),
    "bd_codes": (
        "区划代码文件或目录（默认：随演示数据提供的长春区划代码）",
        "Division codes file or folder (default: the Changchun codes shipped with the demo)",
    ),
    "bd_markers": (
        "界桩登记文件（替代目录中的界桩图层；偏离界线者报错）",
        "A marker register file (replaces the catalog's layer; markers off every line are errors)",
    ),
    "bd_paper": ("示意图纸张：A4 或 A3（横向）", "Paper of the diagrams: A4 or A3 (landscape)"),
    "bd_no_pdf": ("不打印 PDF", "Do not print PDFs"),
    "boundaries_start": (
        "开始行政区域界线分析，输出目录：{out}",
        "Running the boundary analysis into {out}",
    ),
    "boundaries_done": (
        "行政区域界线分析完成，用时 {seconds:.1f} 秒。",
        "Boundaries finished in {seconds:.1f} s.",
    ),
    "relief": (
        "救灾物资调运：需求、按库存精确分配、车辆路线与每车调度单（车行路网，避开封闭道路）",
        "Relief dispatch: needs, exact allocation from stock, vehicle tours and a dispatch sheet "
        "per vehicle (drive network, closed roads avoided)",
    ),
    "relief_days": (params.RELIEF_DAYS_DESCRIPTION, params.RELIEF_DAYS_DESCRIPTION),
    "relief_items": (
        "物资（逗号分隔，默认：有定额的全部物资）",
        "Items, comma-separated (default: every item with a norm)",
    ),
    "reserve_share": (params.RESERVE_DESCRIPTION, params.RESERVE_DESCRIPTION),
    "vehicles": (
        f"每个储备库的车辆数（默认 {params.DEFAULT_VEHICLES_PER_DEPOT}）",
        f"Vehicles per depot (default {params.DEFAULT_VEHICLES_PER_DEPOT})",
    ),
    "capacity_t": (
        f"每车载重（吨，默认 {params.DEFAULT_VEHICLE_CAPACITY_T:g}）",
        f"Load per vehicle, tonnes (default {params.DEFAULT_VEHICLE_CAPACITY_T:g})",
    ),
    "capacity_m3": (
        f"每车容积（立方米，默认 {params.DEFAULT_VEHICLE_CAPACITY_M3:g}）",
        f"Load space per vehicle, m³ (default {params.DEFAULT_VEHICLE_CAPACITY_M3:g})",
    ),
    "shift_h": (
        f"最长班次（小时，默认 {params.DEFAULT_SHIFT_H:g}）",
        f"Longest shift, hours (default {params.DEFAULT_SHIFT_H:g})",
    ),
    "speed_kmh": (
        f"车辆最高车速（公里/小时，默认 {params.DEFAULT_FLEET_SPEED_KMH:g}，限制路网车速）",
        f"Vehicles' top speed, km/h (default {params.DEFAULT_FLEET_SPEED_KMH:g}; caps road speeds)",
    ),
    "occupancy": (
        "用避难场所登记的在住人数字段（如 occupancy_persons）代替责任区计算",
        "Take sheltered persons from this registry column (e.g. occupancy_persons)",
    ),
    "depart_at": (
        "发车时间：HH:MM 或 ISO 时间（调度单显示预计到达时刻）",
        "Departure: HH:MM or an ISO date-time (sheets then give clock times)",
    ),
    "relief_start": (
        "开始救灾物资调运分析，输出目录：{out}",
        "Running the relief dispatch into {out}",
    ),
    "relief_done": (
        "救灾物资调运完成，用时 {seconds:.1f} 秒。",
        "Relief dispatch finished in {seconds:.1f} s.",
    ),
    "demo_start": ("开始运行演示，输出目录：{out}", "Running the demo into {out}"),
    "demo_done": ("演示完成，用时 {seconds:.1f} 秒。", "Demo finished in {seconds:.1f} s."),
    "demo_map": ("地图：{path}", "Map: {path}"),
    "demo_summary": ("汇总：{json} 和 {md}", "Summary: {json} and {md}"),
    "valid": (
        "文件 {file} 作为「{kind}」图层校验通过，未发现问题。",
        "{file} is a valid {kind} layer.",
    ),
    "invalid": (
        "文件 {file} 作为「{kind}」图层未通过校验。",
        "{file} is not a valid {kind} layer.",
    ),
    "not_found": ("找不到文件：{file}", "File not found: {file}"),
    "error": ("错误：{error}", "Error: {error}"),
    "serve_start": (
        "启动服务：http://{host}:{port}/（{workers} 个服务进程）",
        "Serving on http://{host}:{port}/ ({workers} worker processes)",
    ),
    "no_api": (
        "无法启动服务：缺少 API 模块或 uvicorn（{error}）",
        "Cannot start the service: the API or uvicorn is missing ({error})",
    ),
}


def _msg(key: str, lang: str, **values: object) -> str:
    zh, en = _MESSAGES[key]
    return (zh if lang == "zh" else en).format(**values)


def _settings() -> Settings:
    """The settings (environment and .env); the defaults when they cannot be read.

    A broken setting must not stop ``validate`` or the help texts; the verbs that use the
    setting (``serve``) read it again and report the error.
    """
    try:
        return Settings()
    except ValueError:  # pydantic's ValidationError is a ValueError
        return Settings.model_construct()


def _lang_from(argv: Sequence[str]) -> str:
    """The language before parsing (for help texts): --lang, else GEO_MINZHENG_LANG, else zh."""
    for i, arg in enumerate(argv):
        if arg == "--lang" and i + 1 < len(argv) and argv[i + 1] in LANGS:
            return argv[i + 1]
        if arg.startswith("--lang=") and arg.split("=", 1)[1] in LANGS:
            return arg.split("=", 1)[1]
    return _settings().lang


def build_parser(lang: str = "zh") -> argparse.ArgumentParser:
    """The argument parser, with help texts in ``lang``."""

    def h(key: str) -> str:
        return _msg(key, lang)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--lang", choices=LANGS, default=None, help=h("lang"))
    parser = argparse.ArgumentParser(
        prog="geo-minzheng", description=h("description"), parents=[common]
    )
    sub = parser.add_subparsers(dest="command", required=True)

    settings = _settings()
    net = argparse.ArgumentParser(add_help=False)
    net.add_argument(
        "--profile", choices=params.PROFILES, default=settings.network_profile, help=h("profile")
    )
    net.add_argument(
        "--walk-speed",
        type=float,
        default=settings.walk_speed_mps,
        metavar="M_PER_S",
        dest="walk_speed_mps",
        help=h("walk_speed"),
    )

    demo = sub.add_parser("demo", help=h("demo"), description=h("demo"), parents=[common, net])
    demo.add_argument("--out", type=Path, default=Path("out"), help=h("out"))
    demo.add_argument("--catalog", type=Path, default=None, help=h("catalog"))
    demo.set_defaults(func=cmd_demo)

    check = sub.add_parser(
        "validate", help=h("validate"), description=h("validate"), parents=[common]
    )
    check.add_argument("--kind", required=True, choices=sorted(KINDS), help=h("kind"))
    check.add_argument("file", type=Path, help=h("file"))
    check.add_argument("--source-crs", default=None, help=h("source_crs"))
    check.add_argument("--layer", default=None, help=h("layer"))
    check.set_defaults(func=cmd_validate)

    serve = sub.add_parser("serve", help=h("serve"), description=h("serve"), parents=[common, net])
    serve.add_argument("--host", default="127.0.0.1", help=h("host"))
    serve.add_argument("--port", type=int, default=8000, help=h("port"))
    serve.add_argument("--catalog", type=Path, default=None, help=h("catalog"))
    serve.add_argument("--workers", type=int, default=None, help=h("workers"))
    serve.set_defaults(func=cmd_serve)

    cov = sub.add_parser(
        "coverage", help=h("coverage"), description=h("coverage"), parents=[common, net]
    )
    cov.add_argument("--out", type=Path, default=Path("out"), help=h("out"))
    cov.add_argument("--catalog", type=Path, default=None, help=h("catalog"))
    cov.add_argument(
        "--breaks", default=",".join(f"{b:g}" for b in params.DEFAULT_BREAKS_MIN), help=h("breaks")
    )
    cov.add_argument(
        "--categories",
        default=None,
        help=h("categories"),
        metavar="A,B",
    )
    cov.add_argument(
        "--kind",
        default=params.DEFAULT_COVERAGE_KIND,
        choices=(*ELDERCARE_CATEGORIES, "community_service_room"),
        help=h("cov_kind"),
    )
    cov.add_argument("--sites", type=int, default=params.DEFAULT_NEW_SITES, help=h("sites"))
    cov.add_argument("--province", default=None, metavar="FILE|demo", help=h("province"))
    cov.add_argument("--scheduler", default=None, metavar="ADDRESS", help=h("scheduler"))
    cov.add_argument("--workers", type=int, default=None, help=h("cov_workers"))
    cov.add_argument("--run-id", default=None, help=h("run_id"))
    cov.add_argument("--results", default=None, metavar="POSTGRESQL_URL", help=h("results"))
    cov.set_defaults(func=cmd_coverage)
    shel = sub.add_parser(
        "shelters", help=h("shelters"), description=h("shelters"), parents=[common, net]
    )
    shel.add_argument("--out", type=Path, default=Path("out"), help=h("out"))
    shel.add_argument("--catalog", type=Path, default=None, help=h("catalog"))
    shel.add_argument("--hazards", type=Path, default=None, help=h("hazards"))
    shel.add_argument("--closed-roads", type=Path, default=None, help=h("closed_roads"))
    shel.add_argument("--demo-flood", action="store_true", help=h("demo_flood"))
    shel.add_argument(
        "--adult-speed", type=float, default=params.ADULT_WALK_SPEED_MPS, help=h("adult_speed")
    )
    shel.add_argument(
        "--elderly-speed",
        type=float,
        default=params.ELDERLY_WALK_SPEED_MPS,
        help=h("elderly_speed"),
    )
    shel.add_argument("--include-planned", action="store_true", help=h("include_planned"))
    shel.add_argument("--region", default=params.DEFAULT_SHELTER_REGION, help=h("region"))
    shel.set_defaults(func=cmd_shelters)
    bnd = sub.add_parser(
        "boundaries", help=h("boundaries"), description=h("boundaries"), parents=[common, net]
    )
    bnd.add_argument("--out", type=Path, default=Path("out"), help=h("out"))
    bnd.add_argument("--catalog", type=Path, default=None, help=h("catalog"))
    bnd.add_argument("--level", choices=tuple(ADMIN_LEVELS), default=None, help=h("bd_level"))
    bnd.add_argument(
        "--sliver-width", type=float, default=params.DEFAULT_SLIVER_WIDTH_M, help=h("bd_sliver")
    )
    bnd.add_argument(
        "--marker-tolerance",
        type=float,
        default=params.DEFAULT_MARKER_TOLERANCE_M,
        help=h("bd_tolerance"),
    )
    bnd.add_argument(
        "--cycle-years", type=int, default=params.DEFAULT_INSPECTION_CYCLE_YEARS, help=h("bd_cycle")
    )
    bnd.add_argument("--as-of", default=None, metavar="YYYY-MM-DD", help=h("bd_as_of"))
    bnd.add_argument("--route-line", default="auto", help=h("bd_route"))
    bnd.add_argument("--route-start", default=None, metavar="LON,LAT", help=h("bd_start"))
    bnd.add_argument("--return", dest="return_to_start", action="store_true", help=h("bd_return"))
    bnd.add_argument("--codes", default=None, help=h("bd_codes"))
    bnd.add_argument("--markers", type=Path, default=None, help=h("bd_markers"))
    bnd.add_argument("--paper", choices=("A4", "A3"), default="A4", help=h("bd_paper"))
    bnd.add_argument("--no-pdf", action="store_true", help=h("bd_no_pdf"))
    bnd.set_defaults(func=cmd_boundaries)
    rel = sub.add_parser("relief", help=h("relief"), description=h("relief"), parents=[common, net])
    rel.add_argument("--out", type=Path, default=Path("out"), help=h("out"))
    rel.add_argument("--catalog", type=Path, default=None, help=h("catalog"))
    rel.add_argument("--hazards", type=Path, default=None, help=h("hazards"))
    rel.add_argument("--closed-roads", type=Path, default=None, help=h("closed_roads"))
    rel.add_argument("--demo-flood", action="store_true", help=h("demo_flood"))
    rel.add_argument(
        "--days", type=float, default=params.DEFAULT_RELIEF_DAYS, help=h("relief_days")
    )
    rel.add_argument("--items", default=None, metavar="A,B", help=h("relief_items"))
    rel.add_argument(
        "--reserve-share", type=float, default=params.DEFAULT_RESERVE_SHARE, help=h("reserve_share")
    )
    rel.add_argument(
        "--vehicles", type=int, default=params.DEFAULT_VEHICLES_PER_DEPOT, help=h("vehicles")
    )
    rel.add_argument(
        "--capacity-t", type=float, default=params.DEFAULT_VEHICLE_CAPACITY_T, help=h("capacity_t")
    )
    rel.add_argument(
        "--capacity-m3",
        type=float,
        default=params.DEFAULT_VEHICLE_CAPACITY_M3,
        help=h("capacity_m3"),
    )
    rel.add_argument("--shift-h", type=float, default=params.DEFAULT_SHIFT_H, help=h("shift_h"))
    rel.add_argument(
        "--speed-kmh", type=float, default=params.DEFAULT_FLEET_SPEED_KMH, help=h("speed_kmh")
    )
    rel.add_argument("--occupancy-field", default=None, help=h("occupancy"))
    rel.add_argument("--depart-at", default=None, help=h("depart_at"))
    rel.set_defaults(func=cmd_relief)
    # Further analyses (relief, boundaries) join here the same way.
    return parser


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------


def _map_steps(lang: str, names: Sequence[str] | None = None) -> list[demo.DemoStep]:
    """The map steps (``maps.demo_steps``), or none when the web stack is not installed."""
    try:
        from maps import demo_steps
    except ImportError as exc:
        _err(_msg("no_maps", lang, error=exc))
        return []
    return [step for step in demo_steps.MAP_STEPS if names is None or step.name in names]


def _network_params(args: argparse.Namespace) -> workflows.NetworkParams:
    return workflows.NetworkParams(profile=args.profile, walk_speed_mps=args.walk_speed_mps)


def cmd_demo(args: argparse.Namespace, lang: str) -> int:
    """Run the demo job: the core steps (geo_minzheng.demo) with the map steps (maps)."""
    out = Path(args.out)
    _out(_msg("demo_start", lang, out=out.resolve()))
    state = demo.run_demo(
        out,
        lang=lang,
        catalog_path=args.catalog,
        steps=demo.with_steps(_map_steps(lang)),
        progress=_out,
        network=_network_params(args),
    )
    _out(_msg("demo_done", lang, seconds=state.timings_s["total"]))
    if "map" in state.outputs:
        _out(_msg("demo_map", lang, path=state.outputs["map"].resolve()))
    _out(
        _msg(
            "demo_summary",
            lang,
            json=(out / "summary.json").resolve(),
            md=(out / "summary.md").resolve(),
        )
    )
    return EXIT_OK


def _coverage_params(args: argparse.Namespace) -> workflows.CoverageParams:
    """The coverage parameters of the command line (ValueError naming the bad option)."""
    categories = None
    if args.categories:
        categories = tuple(c.strip() for c in args.categories.split(",") if c.strip())
    return workflows.CoverageParams(
        breaks_min=params.parse_breaks_min(args.breaks),
        categories=categories,
        kind=args.kind,
        new_sites=params.check_new_sites(args.sites, name="--sites"),
    )


def _run_analysis(
    args: argparse.Namespace,
    lang: str,
    analysis: str,
    *,
    core: Sequence[str],
    extra: Sequence[demo.DemoStep] = (),
    map_steps: Sequence[demo.DemoStep] = (),
    **state: Any,
) -> int:
    """Run one analysis verb: the named core steps of the demo (``extra`` steps before the
    summary, then ``map_steps``) into ``--out``, announcing it and listing every output."""
    steps = [step for step in demo.DEMO_STEPS if step.name in (*core, "summary")]
    steps[-1:-1] = extra
    out = Path(args.out)
    _out(_msg(f"{analysis}_start", lang, out=out.resolve()))
    done = demo.run_demo(
        out,
        lang=lang,
        catalog_path=args.catalog,
        steps=demo.with_steps(map_steps, steps),
        progress=_out,
        **state,
    )
    _out(_msg(f"{analysis}_done", lang, seconds=done.timings_s["total"]))
    for name, path in done.outputs.items():
        _out(_msg("output", lang, name=name, path=Path(path).resolve()))
    return EXIT_OK


def cmd_coverage(args: argparse.Namespace, lang: str) -> int:
    """Run the coverage workflow on the catalog's layers and print where the outputs are.

    With ``--province``, ``--scheduler`` or ``--workers`` the run is partitioned by county and
    runs on Dask (:func:`cmd_coverage_province`).
    """
    if args.province or args.scheduler or args.workers is not None:
        return cmd_coverage_province(args, lang)
    try:
        coverage_params = _coverage_params(args)
        network_params = _network_params(args)
    except ValueError as exc:
        _err(_msg("bad_option", lang, error=exc))
        return EXIT_USAGE
    return _run_analysis(
        args,
        lang,
        "coverage",
        core=("layers", "validate", "network", "coverage"),
        map_steps=_map_steps(lang, ["coverage_map"]),
        network=network_params,
        coverage=coverage_params,
    )


def cmd_coverage_province(args: argparse.Namespace, lang: str) -> int:
    """Coverage of every city of a province (or of the catalog's city) on Dask, partitioned by
    county; progress per partition, results in one GeoPackage per run (or PostGIS)."""
    from geo_minzheng import province

    try:
        cov = _coverage_params(args)
        net = _network_params(args)
        p = province.ProvinceParams(
            breaks_min=cov.breaks_min,
            categories=cov.categories or params.LIFE_CIRCLE_CATEGORIES,
            profile=net.profile,
            walk_speed_mps=net.walk_speed_mps,
        )
        run_id = province.check_run_id(args.run_id or province.new_run_id())
        if args.workers is not None and args.workers < 1:
            msg = f"--workers must be at least 1, got {args.workers}"
            raise ValueError(msg)
    except ValueError as exc:
        _err(_msg("bad_option", lang, error=exc))
        return EXIT_USAGE
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.province == "demo":
        source = province.ProvinceFile(out / "demo-province.gpkg")
        if not source.path.exists():
            province.build_test_province(source.path, synthetic_cities=4)
    elif args.province:
        source = province.ProvinceFile(Path(args.province))
    else:  # the catalog's city as a one-city province
        from geo_minzheng.catalog import load_catalog

        frames = load_catalog(args.catalog or demo.default_catalog()).read_all()
        source = province.city_province(out / "input-province.gpkg", frames)
    results = args.results or out
    cities = source.cities()
    where = results if args.results else out / f"province-{run_id}.gpkg"
    _out(_msg("province_start", lang, cities=len(cities), run_id=run_id, out=where))
    run = province.run_province(
        source,
        p,
        out=results,
        run_id=run_id,
        scheduler=args.scheduler,
        n_workers=args.workers,
        progress=province.TerminalProgress(sys.stderr),
    )
    report = run.report()
    if len(run.table):
        run.table.to_csv(out / "province_table.csv", index=False, encoding="utf-8-sig")
        run.unit_shares().to_csv(out / "province_units.csv", index=False, encoding="utf-8-sig")
    _out(
        _msg(
            "province_done",
            lang,
            cities=report["cities"],
            partitions=report["partitions"],
            resumed=report["resumed"],
            points=report["demand_points"],
            seconds=run.seconds,
            failures=len(run.failures),
        )
    )
    peaks = ", ".join(f"{w} {mb:.0f} MB" for w, mb in run.worker_peak_mb.items())
    _out(_msg("province_peak", lang, peaks=peaks or "-"))
    for name, path in (
        ("province_gpkg", where),
        ("province_table", out / "province_table.csv"),
        ("province_units", out / "province_units.csv"),
    ):
        _out(_msg("output", lang, name=name, path=path))
    province.check_complete(run)  # PartitionError (exit 1) naming what failed, how to resume
    return EXIT_OK


def _read_optional(path: Path | None) -> geopandas.GeoDataFrame | None:
    """A hazard or closure layer file, or None."""
    if path is None:
        return None
    from geo_minzheng import io as gm_io

    return gm_io.read_features(path)  # FileNotFoundError, LayerReadError: one line in main()


def cmd_shelters(args: argparse.Namespace, lang: str) -> int:
    """Run the shelter workflow on the catalog's layers and print where the outputs are."""
    shelter_params = workflows.ShelterParams(
        adult_walk_speed_mps=args.adult_speed,
        elderly_walk_speed_mps=args.elderly_speed,
        include_planned=args.include_planned,
        region=args.region,
    )
    hazards, closed = _read_optional(args.hazards), _read_optional(args.closed_roads)
    return _run_analysis(
        args,
        lang,
        "shelters",
        core=("layers", "validate", "network", "shelters"),
        map_steps=_map_steps(lang, ["shelters_map"]),
        network=_network_params(args),
        shelters=shelter_params,
        hazards=hazards,
        closed_roads=closed,
        demo_flood=args.demo_flood,
    )


def _boundary_params(args: argparse.Namespace) -> workflows.BoundaryParams:
    """The boundary parameters of the command line (ValueError naming the bad option)."""
    start = None
    if args.route_start:
        try:
            lon, lat = (float(v) for v in args.route_start.split(","))
        except ValueError:
            msg = f"--route-start must be lon,lat such as 125.32,43.88, got {args.route_start!r}"
            raise ValueError(msg) from None
        start = (lon, lat)
    route = None if str(args.route_line).lower() == "none" else args.route_line
    return workflows.BoundaryParams(
        level=args.level,
        sliver_width_m=params.check_sliver_width_m(args.sliver_width, name="--sliver-width"),
        marker_tolerance_m=params.check_marker_tolerance_m(
            args.marker_tolerance, name="--marker-tolerance"
        ),
        cycle_years=params.check_cycle_years(args.cycle_years, name="--cycle-years"),
        as_of=args.as_of,
        route_line=route,
        route_start=start,
        return_to_start=args.return_to_start,
        codes_dir=args.codes,
    )


def cmd_boundaries(args: argparse.Namespace, lang: str) -> int:
    """Run the boundary workflow on the catalog's layers; write the tables, maps and 两图一责."""
    try:
        boundary_params = _boundary_params(args)
        network_params = _network_params(args)
    except ValueError as exc:
        _err(_msg("bad_option", lang, error=exc))
        return EXIT_USAGE
    markers = _read_optional(args.markers)
    if markers is not None:
        markers.attrs["layer"] = Path(args.markers).name
    core = (
        ("layers", "validate", "network") if boundary_params.route_line else ("layers", "validate")
    )
    maps: list[demo.DemoStep] = []
    try:
        from maps import demo_steps

        maps = [demo_steps.boundaries_map_step(pdf=not args.no_pdf, paper=args.paper)]
    except ImportError as exc:
        _err(_msg("no_maps", lang, error=exc))
    return _run_analysis(
        args,
        lang,
        "boundaries",
        core=core,
        extra=[demo.boundaries_step(boundary_params, gdf_markers=markers)],
        map_steps=maps,
        network=network_params,
    )


def cmd_relief(args: argparse.Namespace, lang: str) -> int:
    """Run the relief workflow (after the shelter step that gives the sheltered persons) and
    print where the tables, routes and dispatch sheets are."""
    try:
        items = tuple(i.strip() for i in args.items.split(",") if i.strip()) if args.items else None
        relief_params = workflows.ReliefParams(
            days=args.days,
            items=items,
            reserve_share=args.reserve_share,
            vehicles_per_depot=args.vehicles,
            vehicle_capacity_t=args.capacity_t,
            vehicle_capacity_m3=args.capacity_m3,
            shift_h=args.shift_h,
            speed_kmh=args.speed_kmh,
            occupancy_field=args.occupancy_field,
            depart_at=args.depart_at,
        )
        network_params = _network_params(args)
    except ValueError as exc:
        _err(_msg("bad_option", lang, error=exc))
        return EXIT_USAGE
    hazards, closed = _read_optional(args.hazards), _read_optional(args.closed_roads)
    return _run_analysis(
        args,
        lang,
        "relief",
        core=("layers", "validate", "network", "shelters"),
        extra=[demo.relief_step(relief_params)],
        map_steps=_map_steps(lang, ["relief_map"]),
        network=network_params,
        hazards=hazards,
        closed_roads=closed,
        demo_flood=args.demo_flood,
    )


def cmd_validate(args: argparse.Namespace, lang: str) -> int:
    """Validate one file as a layer of ``--kind``; print the report; exit 1 when invalid."""
    from geo_minzheng import io as gm_io
    from geo_minzheng import reports
    from geo_minzheng.kinds import get_kind

    path = Path(args.file)
    if not path.exists():
        _err(_msg("not_found", lang, file=path))
        return EXIT_USAGE
    kind_label = get_kind(args.kind).label(lang)
    problems = gm_io.validate_file(
        path, kind=args.kind, source_crs=args.source_crs, layer_name=args.layer
    )
    report = reports.format_report(problems, lang=lang, kind=args.kind)
    if problems:
        _out(_msg("invalid", lang, file=path, kind=kind_label))
        _out(report)
        return EXIT_INVALID
    _out(_msg("valid", lang, file=path, kind=kind_label))
    return EXIT_OK


def cmd_serve(args: argparse.Namespace, lang: str) -> int:
    """Start the API under uvicorn, one worker process per CPU unless ``--workers`` says.

    The store is opened and filled here first, so a wrong store URL, a database without PostGIS
    or a broken catalog is one line (main() prints it) before any worker starts. The options
    reach the workers through ``GEO_MINZHENG_*`` variables (api.app.settings_environ). The web
    stack is imported only here.
    """
    try:
        import uvicorn  # noqa: F401 - checked here, run by api.app.serve

        from api import app as api_app
    except ImportError as exc:
        _err(_msg("no_api", lang, error=exc))
        return EXIT_INVALID
    if args.workers is not None and args.workers < 1:
        _err(_msg("bad_option", lang, error=f"--workers must be at least 1, got {args.workers}"))
        return EXIT_USAGE

    settings = Settings()
    # the demo catalog ships with its GeoPackage, so nothing is generated here
    catalog = args.catalog or settings.catalog or demo.default_catalog()
    update: dict[str, object] = {
        "catalog": Path(catalog),
        "network_profile": params.check_profile(args.profile),
        "walk_speed_mps": params.check_walk_speed_mps(args.walk_speed_mps, name="--walk-speed"),
    }
    if args.lang:
        update["lang"] = args.lang
    settings = settings.model_copy(update=update)
    workers = api_app.default_workers() if args.workers is None else args.workers
    api_app.prepare_store(settings)
    _out(_msg("serve_start", lang, host=args.host, port=args.port, workers=workers))
    api_app.serve(args.host, args.port, settings, workers=workers, prepare=False)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``geo-minzheng`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_lang_from(argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on usage errors
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    lang = args.lang or _lang_from(argv)
    from geo_minzheng import io as gm_io
    from geo_minzheng import reports

    try:
        return int(args.func(args, lang))
    except LayerReadError as exc:  # a layer file that cannot be read at all: one line, any verb
        _err(reports.read_error_text(exc, lang=lang))
        return EXIT_INVALID
    except (CRSError, CatalogError, UnknownIdError, FileNotFoundError) as exc:
        # input that cannot be used as given: no CRS, broken catalog, missing file
        _err(_msg("error", lang, error=exc))
        return EXIT_USAGE
    except LayerValidationError as exc:  # invalid layers in a job: the report, in lang
        _err(_msg("error", lang, error=reports.format_report(exc.problems, lang=lang)))
        return EXIT_INVALID
    except GeoMinzhengError as exc:  # a failed step of a job
        _err(_msg("error", lang, error=exc))
        return EXIT_INVALID
    except gm_io.READ_ERRORS as exc:  # a file a verb read without io (e.g. --hazards)
        _err(reports.read_error_text(gm_io.read_error(exc), lang=lang))
        return EXIT_INVALID
    except OSError as exc:  # a folder that cannot be written, a full disk: one line
        _err(_msg("error", lang, error=exc))
        return EXIT_INVALID
    except ValueError as exc:  # a parameter outside its rule (params), e.g. --walk-speed 9
        _err(_msg("bad_option", lang, error=exc))
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
