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
from typing import TYPE_CHECKING

from geo_minzheng import demo, params, workflows
from geo_minzheng._errors import CatalogError, CRSError, GeoMinzhengError, UnknownIdError
from geo_minzheng.kinds import ELDERCARE_CATEGORIES, KINDS
from geo_minzheng.settings import Settings

if TYPE_CHECKING:
    import geopandas

LANGS = ("zh", "en")
#: Exit codes: 0 ok, 1 invalid data (validate) or a failed job, 2 bad usage or unreadable input.
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
    "serve_start": ("启动服务：http://{host}:{port}/", "Serving on http://{host}:{port}/"),
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


def cmd_coverage(args: argparse.Namespace, lang: str) -> int:
    """Run the coverage workflow on the catalog's layers and print where the outputs are."""
    try:
        coverage_params = _coverage_params(args)
        network_params = _network_params(args)
    except ValueError as exc:
        _err(_msg("bad_option", lang, error=exc))
        return EXIT_USAGE
    names = ("layers", "validate", "network", "coverage", "summary")
    core = [step for step in demo.DEMO_STEPS if step.name in names]
    steps = demo.with_steps(_map_steps(lang, ["coverage_map"]), core)
    out = Path(args.out)
    _out(_msg("coverage_start", lang, out=out.resolve()))
    state = demo.run_demo(
        out,
        lang=lang,
        catalog_path=args.catalog,
        steps=steps,
        progress=_out,
        network=network_params,
        coverage=coverage_params,
    )
    _out(_msg("coverage_done", lang, seconds=state.timings_s["total"]))
    for name, path in state.outputs.items():
        _out(_msg("output", lang, name=name, path=Path(path).resolve()))
    return EXIT_OK


def _read_optional(path: Path | None) -> geopandas.GeoDataFrame | None:
    """A hazard or closure layer file, or None."""
    if path is None:
        return None
    import geopandas as gpd

    if not path.exists():
        msg = f"file not found: {path}"
        raise FileNotFoundError(msg)
    return gpd.read_file(path)


def cmd_shelters(args: argparse.Namespace, lang: str) -> int:
    """Run the shelter workflow on the catalog's layers and print where the outputs are."""
    shelter_params = workflows.ShelterParams(
        adult_walk_speed_mps=args.adult_speed,
        elderly_walk_speed_mps=args.elderly_speed,
        include_planned=args.include_planned,
        region=args.region,
    )
    hazards, closed = _read_optional(args.hazards), _read_optional(args.closed_roads)
    names = ("layers", "validate", "network", "shelters", "summary")
    steps = demo.with_steps(
        _map_steps(lang, ["shelters_map"]), [s for s in demo.DEMO_STEPS if s.name in names]
    )
    out = Path(args.out)
    _out(_msg("shelters_start", lang, out=out.resolve()))
    state = demo.run_demo(
        out,
        lang=lang,
        catalog_path=args.catalog,
        steps=steps,
        progress=_out,
        network=_network_params(args),
        shelters=shelter_params,
        hazards=hazards,
        closed_roads=closed,
        demo_flood=args.demo_flood,
    )
    _out(_msg("shelters_done", lang, seconds=state.timings_s["total"]))
    for name, path in state.outputs.items():
        _out(_msg("output", lang, name=name, path=Path(path).resolve()))
    return EXIT_OK


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
    """Start the API (api.app.create_app) under uvicorn; the web stack is imported only here."""
    try:
        import uvicorn

        from api.app import create_app
    except ImportError as exc:
        _err(_msg("no_api", lang, error=exc))
        return EXIT_INVALID

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
    _out(_msg("serve_start", lang, host=args.host, port=args.port))
    uvicorn.run(create_app(settings), host=args.host, port=args.port)
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
    try:
        return int(args.func(args, lang))
    except (CRSError, CatalogError, UnknownIdError, FileNotFoundError) as exc:
        # input that cannot be read at all: no CRS, broken catalog, missing file
        _err(_msg("error", lang, error=exc))
        return EXIT_USAGE
    except GeoMinzhengError as exc:  # invalid layers, a failed step of a job
        _err(_msg("error", lang, error=exc))
        return EXIT_INVALID
    except ValueError as exc:  # a parameter outside its rule (params), e.g. --walk-speed 9
        _err(_msg("bad_option", lang, error=exc))
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
