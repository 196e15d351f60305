"""The ``geo-minzheng`` command: ``demo``, ``validate`` and ``serve``; analyses join as subcommands.

Messages are in Simplified Chinese by default and in English with ``--lang en`` or
``GEO_MINZHENG_LANG=en``. The web stack (FastAPI, uvicorn, folium) is imported only inside the
commands that need it, so ``validate`` runs on a machine without it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from geo_minzheng._errors import CatalogError, CRSError, GeoMinzhengError, UnknownIdError
from geo_minzheng.kinds import KINDS

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
    "breaks": ("步行时间阈值（分钟，逗号分隔，默认 5,10,15）", "Walking-time breaks in minutes"),
    "cov_kind": ("地图与选址所用的设施类型", "Facility kind to map and site"),
    "sites": ("新增选址数量 k（0 表示不选址）", "Number of new sites k (0: no siting)"),
    "bad_breaks": (
        "--breaks 应为正数列表，如 5,10,15，实际为 {value!r}",
        "--breaks must be positive numbers such as 5,10,15, got {value!r}",
    ),
    "coverage_done": (
        "覆盖分析完成，用时 {seconds:.1f} 秒。",
        "Coverage finished in {seconds:.1f} s.",
    ),
    "output": ("{name}：{path}", "{name}: {path}"),
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


def _lang_from(argv: Sequence[str]) -> str:
    """The language before parsing (for help texts): --lang, else GEO_MINZHENG_LANG, else zh."""
    for i, arg in enumerate(argv):
        if arg == "--lang" and i + 1 < len(argv) and argv[i + 1] in LANGS:
            return argv[i + 1]
        if arg.startswith("--lang=") and arg.split("=", 1)[1] in LANGS:
            return arg.split("=", 1)[1]
    env = os.environ.get("GEO_MINZHENG_LANG", "").strip().lower()
    return env if env in LANGS else "zh"


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

    demo = sub.add_parser("demo", help=h("demo"), description=h("demo"), parents=[common])
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

    serve = sub.add_parser("serve", help=h("serve"), description=h("serve"), parents=[common])
    serve.add_argument("--host", default="127.0.0.1", help=h("host"))
    serve.add_argument("--port", type=int, default=8000, help=h("port"))
    serve.add_argument("--catalog", type=Path, default=None, help=h("catalog"))
    serve.set_defaults(func=cmd_serve)

    cov = sub.add_parser(
        "coverage", help=h("coverage"), description=h("coverage"), parents=[common]
    )
    cov.add_argument("--out", type=Path, default=Path("out"), help=h("out"))
    cov.add_argument("--catalog", type=Path, default=None, help=h("catalog"))
    cov.add_argument("--breaks", default="5,10,15", help=h("breaks"))
    cov.add_argument(
        "--kind",
        default="home_care_center",
        choices=("home_care_center", "day_care_center", "community_service_room"),
        help=h("cov_kind"),
    )
    cov.add_argument("--sites", type=int, default=5, help=h("sites"))
    cov.set_defaults(func=cmd_coverage)
    # Further analyses (shelters, relief, boundaries) join here the same way.
    return parser


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace, lang: str) -> int:
    """Run the demo job (geo_minzheng.demo) and print where its outputs are."""
    from geo_minzheng import demo

    out = Path(args.out)
    _out(_msg("demo_start", lang, out=out.resolve()))
    state = demo.run_demo(out, lang=lang, catalog_path=args.catalog, progress=_out)
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


def _parse_breaks(value: str) -> tuple[float, ...] | None:
    """``"5,10,15"`` -> (5.0, 10.0, 15.0); None when any part is not a positive number."""
    try:
        breaks = tuple(float(part) for part in value.split(",") if part.strip())
    except ValueError:
        return None
    return breaks if breaks and all(b > 0 for b in breaks) else None


def cmd_coverage(args: argparse.Namespace, lang: str) -> int:
    """Run the coverage analysis on the catalog's layers and print where the outputs are."""
    from geo_minzheng import demo

    breaks = _parse_breaks(args.breaks)
    if breaks is None:
        _err(_msg("bad_breaks", lang, value=args.breaks))
        return EXIT_USAGE
    names = ("layers", "validate", "network", "coverage", "coverage_map", "summary")
    steps = [step for step in demo.DEMO_STEPS if step.name in names]
    options = {"breaks_min": breaks, "kind": args.kind, "new_sites": args.sites}
    out = Path(args.out)
    _out(_msg("demo_start", lang, out=out.resolve()))
    state = demo.run_demo(
        out, lang=lang, catalog_path=args.catalog, steps=steps, progress=_out, options=options
    )
    _out(_msg("coverage_done", lang, seconds=state.timings_s["total"]))
    for name, path in state.outputs.items():
        _out(_msg("output", lang, name=name, path=Path(path).resolve()))
    return EXIT_OK


def cmd_validate(args: argparse.Namespace, lang: str) -> int:
    """Validate one file as a layer of ``--kind``; print the report; exit 1 when invalid."""
    from geo_minzheng import validation
    from geo_minzheng.kinds import get_kind

    path = Path(args.file)
    if not path.exists():
        _err(_msg("not_found", lang, file=path))
        return EXIT_USAGE
    kind_label = get_kind(args.kind).label(lang)
    problems = validation.validate_file(
        path, kind=args.kind, source_crs=args.source_crs, layer_name=args.layer
    )
    report = validation.format_report(problems, lang=lang, kind=args.kind)
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
    from geo_minzheng import demo, scenario
    from geo_minzheng.settings import Settings

    settings = Settings()
    catalog = args.catalog or settings.catalog or demo.default_catalog()
    if Path(catalog).resolve() == demo.DEFAULT_CATALOG and not scenario.DEMO_GPKG.exists():
        scenario.write_demo_gpkg()
    update: dict[str, object] = {"catalog": Path(catalog)}
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


if __name__ == "__main__":
    sys.exit(main())
