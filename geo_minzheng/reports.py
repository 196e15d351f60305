"""Readable reports of validation problems: Simplified Chinese by default, English on request.

:mod:`geo_minzheng.validation` finds the problems (record, field, expected, found, code); this
module only words them for people, so the rules module never carries display text and any
front end (the CLI, the API, a batch job) words a report the same way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from geo_minzheng._errors import Problem
from geo_minzheng.kinds import LayerKind, get_kind

_ZH_TEMPLATES = {
    "missing_field": "缺少字段「{label}」({field})；现有字段：{found}",
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
        rows = re.search(r"rows ([\d, ]+)", problem.found)
        metres = re.findall(r"(\d+) m\b", problem.found) + ["?", "?"]
        text = template.replace(
            "「{label}」({field})",
            "「{label}」" if label == problem.field else "「{label}」({field})",
        ).format(
            label=label,
            field=problem.field,
            expected=problem.expected,
            found=problem.found,
            type_zh=_TYPE_ZH.get(field_type, problem.expected),
            allowed=allowed,
            rows=rows.group(1).replace(", ", "、") if rows else problem.found,
            m_given=metres[0],
            m_shifted=metres[1],
        )
        lines.append(f"  - {record}：{text}")
    return "\n".join(lines)
