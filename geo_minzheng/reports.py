"""Readable reports of validation problems: Simplified Chinese by default, English on request.

:mod:`geo_minzheng.validation` finds the problems (record, field, expected, found, code); this
module only words them for people, so the rules module never carries display text and any
front end (the CLI, the API, a batch job) words a report the same way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from geo_minzheng._errors import LayerReadError, Problem
from geo_minzheng.kinds import LayerKind, get_kind

_ZH_TEMPLATES = {
    "missing_field": "缺少字段「{label}」({field})；现有字段：{found}{likely}",
    "no_records": "图层没有任何记录（0 条）：文件只有表头或字段定义，没有数据",
    "missing_value": "必填字段「{label}」({field})为空",
    "bad_type": "「{label}」({field})应为{type_zh}，实际为 {found}",
    "out_of_range": "「{label}」({field})应 {expected}，实际为 {found}",
    "unknown_value": "「{label}」({field})的取值 {found} 不在允许范围内，允许值：{allowed}",
    "duplicate_id": "编号重复：第 {rows} 行使用同一编号",
    "inconsistent": "「{label}」({field})应 {expected}，实际为 {found}",
    "swapped_lonlat": "经纬度疑似颠倒（{found}）：请交换经度、纬度两列",
    "outside_china": "位置不在中国境内（{found}）",
    "missing_lonlat": "缺少经纬度：{found}",
    "empty_geometry": "缺少位置（几何为空）",
    "wrong_geometry_type": "几何类型应为 {expected}，实际为 {found}",
    "invalid_geometry": "几何无效：{found}（可调用 repair_geometries 修复）",
    "missing_crs": "图层没有坐标系，应为 WGS84 (EPSG:4326)",
    "wrong_crs": "图层坐标系为 {found}，应为 WGS84 (EPSG:4326)",
    "gcj02_offset": (
        "图层疑似为 GCJ-02（高德/腾讯）坐标却按 WGS84 读取：到道路距离的下四分位数按原样为 "
        "{m_given} 米，按 GCJ-02 转换后为 {m_shifted} 米；请用 source_crs='GCJ-02' 读取"
    ),
    "bd09_offset": (
        "图层疑似为 BD-09（百度）坐标却按 WGS84 读取：到道路距离的下四分位数按原样为 "
        "{m_given} 米，按 BD-09 转换后为 {m_shifted} 米；请用 source_crs='BD-09' 读取"
    ),
}
_TYPE_ZH = {
    "int": "整数",
    "float": "数值",
    "str": "文本",
    "bool": "是/否",
    "date": "日期(YYYY-MM-DD)",
    "list": "列表",
}


def _record_zh(record: str) -> tuple[str, LayerKind | None]:
    match = re.fullmatch(r"(\w+) '(.*)'", record, flags=re.S)
    if match:
        name, ident = match.groups()
        if name == "layer":
            return f"图层 '{ident}'", None
        try:
            spec = get_kind(name)
        except KeyError:
            return record, None
        return f"{spec.label_zh} '{ident}'", spec
    match = re.fullmatch(r"row (\d+)", record)
    if match:
        return f"第 {match.group(1)} 行", None
    return record, None


def format_report(
    problems: Sequence[Problem], *, lang: str = "zh", kind: str | LayerKind | None = None
) -> str:
    """A readable report of ``problems``: Simplified Chinese by default, English with lang='en'.

    ``kind`` lets the Chinese report use field labels for records named by row number.
    """
    if lang not in ("zh", "en"):
        msg = f"lang must be 'zh' or 'en', got {lang!r}"
        raise ValueError(msg)
    if not problems:
        return "未发现问题。" if lang == "zh" else "No problems found."
    head = (
        f"发现 {len(problems)} 个问题：" if lang == "zh" else f"{len(problems)} problem(s) found:"
    )
    lines = [head]
    default_kind = get_kind(kind) if isinstance(kind, str) else kind
    for problem in problems:
        if lang == "en":
            lines.append(f"  - {problem}")
            continue
        record, spec = _record_zh(problem.record)
        spec = spec or default_kind
        label = problem.field
        field_type = ""
        choices: dict[str, tuple[str, str]] = {}
        if spec is not None:
            try:
                field_spec = spec.field(problem.field)
                label, field_type = field_spec.label_zh, field_spec.type
                choices = field_spec.choices or {}
            except KeyError:
                pass
        template = _ZH_TEMPLATES.get(problem.code)
        if template is None:
            lines.append(f"  - {record}：{problem}")
            continue
        allowed = problem.expected.removeprefix("one of: ")
        if choices:
            allowed = "、".join(f"{code}（{choices[code][0]}）" for code in choices)
        found, likely = problem.found, ""
        if problem.code == "missing_field":
            found, likely = _split_likely(problem.found, problem.field, label)
        rows = re.search(r"rows ([\d, ]+)", problem.found)
        metres = re.findall(r"(\d+) m\b", problem.found) + ["?", "?"]
        text = template.replace(
            "「{label}」({field})",
            "「{label}」" if label == problem.field else "「{label}」({field})",
        ).format(
            label=label,
            field=problem.field,
            expected=problem.expected,
            found=found,
            likely=likely,
            type_zh=_TYPE_ZH.get(field_type, problem.expected),
            allowed=allowed,
            rows=rows.group(1).replace(", ", "、") if rows else problem.found,
            m_given=metres[0],
            m_shifted=metres[1],
        )
        lines.append(f"  - {record}：{text}")
    return "\n".join(lines)


_LIKELY = re.compile(r"; likely match: '(.*?)' \(if it holds")


def _split_likely(found: str, field: str, label: str) -> tuple[str, str]:
    """The columns of a missing-field problem, and its likely-match advice worded in Chinese."""
    match = _LIKELY.search(found)
    if match is None:
        columns, column = found.removeprefix("columns: "), None
    else:
        columns, column = found[: match.start()].removeprefix("columns: "), match.group(1)
    columns = "无" if columns == "none" else columns
    if column is None:
        return columns, ""
    advice = (
        f"；列「{column}」可能就是该字段：如是，请把表头改为「{label}」（或 {field}），"
        f"或在图层目录中写 fields: {{{field}: {column}}}"
    )
    return columns, advice


#: What is wrong with a file that cannot be read, per LayerReadError code, in Chinese.
_READ_ZH = {
    "not_a_file": "这是一个文件夹，不是文件",
    "empty_file": "文件是空的（0 字节）",
    "no_content": "文件没有表头也没有记录：{what}",
    "not_text": "文件含有二进制内容，不是文本表格，请确认它确实是 CSV 文件",
    "bad_encoding": (
        "文本编码无法识别（尝试了 {tried}）：第 {line} 行第 {column} 个字节 {byte} 无法解码；"
        "请在 Excel/WPS 中另存为“CSV UTF-8”或 GBK 编码"
    ),
    "bad_encoding_geojson": (
        "文本编码无法识别：第 {line} 行第 {column} 个字节 {byte} 不是 UTF-8；"
        "GeoJSON 文件必须为 UTF-8 编码（RFC 7946）"
    ),
    "bad_table": (
        "表格格式错误：第 {line} 行有 {found} 个单元格，而表头只有 {expected} 列"
        "（值中含有分隔符“{sep}”时需加引号）"
    ),
    "bad_table_detail": "表格格式错误：{detail}",
    "truncated": "文件在第 {line} 行第 {column} 列处提前结束，内容不完整（下载或复制可能中断）",
    "bad_json": "不是有效的 JSON：第 {line} 行第 {column} 列有语法错误（{detail}）",
    "not_geojson": (
        '是 JSON 文件，但不是 GeoJSON：应有 "type": "FeatureCollection"，实际为 {found}'
    ),
    "missing_part": "Shapefile 缺少配套的 {part} 文件（.shp、.shx、.dbf、.prj 须放在同一文件夹）",
    "bad_format": "不是有效的 {format} 文件（内容无法识别：可能已损坏，或由其他格式改名而来）",
    "bad_format_detail": "不是有效的 {format} 文件：{detail}",
    "damaged": "GeoPackage 文件已损坏或不完整（{detail}）",
    "damaged_workbook": "Excel 工作簿已损坏，或是由其他 ZIP 格式文件改名为 {suffix}",
    "shapefile_part": "这只是 Shapefile 的一个组成文件，不是图层：请指定 .shp 文件（{shp}）",
    "unknown_format": (
        "无法识别的文件格式“{suffix}”：请使用 GeoJSON、GeoPackage、Shapefile、CSV 或 XLSX"
    ),
    "old_excel": "无法读取旧版 Excel 工作簿（.xls）：请在 Excel/WPS 中另存为 .xlsx 或 CSV",
    "no_geometry": "图层没有几何信息：这是一张普通表格，不是地图图层",
    "no_permission": "没有读取该文件的权限",
    "unreadable": "{detail}",
}


def read_error_text(error: LayerReadError, *, lang: str = "zh") -> str:
    """One line naming the file that cannot be read and what is wrong, in ``lang``.

    ``geo-minzheng`` prints this for every file it cannot read, whatever the verb.
    """
    if lang == "en":
        where = f"Cannot read {error.path}" if error.path else "Cannot read the file"
        return f"{where}: {error.reason}"
    values = {"detail": error.reason, **error.values}
    key = error.code
    if key in ("bad_table", "bad_format") and "line" not in values and values.get("detail"):
        key = f"{key}_detail"
    if key == "bad_encoding" and values.get("geojson"):
        key = "bad_encoding_geojson"
    if key == "no_content":
        sheet = values.get("sheet")
        values["what"] = (
            f"工作表“{sheet}”是空的"
            if sheet
            else "只有字节顺序标记（BOM）"
            if values.get("bom")
            else "只有空行"
        )
    try:
        text = _READ_ZH[key].format(**values)
    except (KeyError, IndexError):
        text = error.reason
    where = f"无法读取文件 {error.path}" if error.path else "无法读取文件"
    return f"{where}：{text}"
