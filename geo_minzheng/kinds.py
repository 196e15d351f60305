"""The layer kinds geo-minzheng knows: fields, types, units, allowed values, geometry, labels.

Every layer a bureau loads is one of these kinds. Validation (``validation.py``), the catalog,
the maps and the API all read these specifications instead of hard-coding field names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, TypeVar

from geo_minzheng._errors import UnknownIdError

if TYPE_CHECKING:
    import pandas as pd

DataFrameT = TypeVar("DataFrameT", bound="pd.DataFrame")

FieldType = Literal["str", "int", "float", "bool", "date", "list"]

POINT = ("Point",)
AREA = ("Polygon", "MultiPolygon")
LINE = ("LineString", "MultiLineString")

#: Label carried by every generated record of the demo scenario (docs/scenario.md).
DEMO_SCENARIO_LABEL = "演示情景 / demo scenario"


@dataclass(frozen=True)
class FieldSpec:
    """One attribute of a layer kind, with its unit and bounds where it has them."""

    name: str
    type: FieldType
    label_zh: str
    label_en: str
    required: bool = False
    unit: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    #: allowed values mapped to their (zh, en) labels; None means any value
    choices: dict[str, tuple[str, str]] | None = None
    exclusive_minimum: bool = False

    def label(self, lang: str = "zh") -> str:
        """The user-facing label in ``lang`` ('zh' or 'en')."""
        return self.label_zh if lang == "zh" else self.label_en


@dataclass(frozen=True)
class LayerKind:
    """A kind of layer: its ID field, fields, allowed geometry types and labels."""

    name: str
    label_zh: str
    label_en: str
    geometry_types: tuple[str, ...]
    fields: tuple[FieldSpec, ...]
    id_field: str = "id"
    name_field: str | None = "name"
    extra: dict[str, str] = field(default_factory=dict)

    def label(self, lang: str = "zh") -> str:
        """The user-facing label of the kind in ``lang`` ('zh' or 'en')."""
        return self.label_zh if lang == "zh" else self.label_en

    @property
    def required_fields(self) -> tuple[str, ...]:
        """Names of the fields every record must have."""
        return tuple(f.name for f in self.fields if f.required)

    def field(self, name: str) -> FieldSpec:
        """The specification of field ``name``."""
        for spec in self.fields:
            if spec.name == name:
                return spec
        msg = f"layer kind '{self.name}' has no field '{name}'"
        raise UnknownIdError(msg)


def _id(label_zh: str = "编号") -> FieldSpec:
    return FieldSpec("id", "str", label_zh, "ID", required=True)


def _name(label_zh: str = "名称") -> FieldSpec:
    return FieldSpec("name", "str", label_zh, "Name", required=True)


_SOURCE = FieldSpec("source", "str", "数据来源", "Data source")
_ADMIN_CODE = FieldSpec("admin_code", "str", "所属行政区划代码", "Admin unit code")
_ADDRESS = FieldSpec("address", "str", "地址", "Address")

ELDERCARE_CATEGORIES = {
    "nursing_home": ("养老机构", "Nursing home"),
    "home_care_center": ("居家养老服务中心", "Home-eldercare service centre"),
    "day_care_center": ("日间照料中心", "Day-care centre"),
    "meal_point": ("助餐点", "Meal point"),
}
ELDERCARE_SERVICES = {
    "meals": ("助餐", "Meals"),
    "day_care": ("日间照料", "Day care"),
    "home_visits": ("上门服务", "Home visits"),
    "rehabilitation": ("康复护理", "Rehabilitation"),
    "medical": ("医疗服务", "Medical care"),
    "respite": ("喘息服务", "Respite care"),
    "recreation": ("文化娱乐", "Recreation"),
}
#: GB 51143-2015 防灾避难场所设计规范: emergency, fixed (short/medium/long-term) and central.
SHELTER_CLASSES = {
    "emergency": ("紧急避难场所", "Emergency shelter"),
    "fixed_short": ("短期固定避难场所", "Fixed shelter, short-term"),
    "fixed_medium": ("中期固定避难场所", "Fixed shelter, medium-term"),
    "fixed_long": ("长期固定避难场所", "Fixed shelter, long-term"),
    "central": ("中心避难场所", "Central shelter"),
}
FACILITY_STATUS = {
    "open": ("启用", "Open"),
    "closed": ("关闭", "Closed"),
    "full": ("已满", "Full"),
    "planned": ("规划中", "Planned"),
}
#: The open-facility rule, the one every analysis applies (geo_minzheng.workflows): a facility
#: serves residents when it is open or full (a full facility still serves the people it has,
#: and its area is still covered) or has no status (registries without the field). Closed and
#: planned facilities serve nobody today. Analyses that assign new people (shelter places)
#: further leave out full facilities themselves.
IN_SERVICE_STATUSES = frozenset({"open", "full"})
DEPOT_LEVELS = {
    "national": ("中央级", "National"),
    "provincial": ("省级", "Provincial"),
    "municipal": ("市级", "Municipal"),
    "county": ("县级", "County"),
}
#: Relief items a depot stocks, with their counting unit (民政部救灾物资储备 items).
RELIEF_ITEMS = {
    "tent": ("帐篷", "Tents", "顶"),
    "quilt": ("棉被", "Quilts", "床"),
    "folding_bed": ("折叠床", "Folding beds", "张"),
    "water": ("饮用水", "Drinking water", "L"),
    "food": ("方便食品", "Instant food", "kg"),
    "clothing": ("衣物", "Clothing", "套"),
}
ADMIN_LEVELS = {
    "province": ("省级", "Province"),
    "city": ("地级", "City"),
    "district": ("区县", "District/county"),
    "street": ("街道/乡镇", "Street/township"),
    "community": ("社区/村", "Community/village"),
}
MARKER_STATUS = {
    "intact": ("完好", "Intact"),
    "damaged": ("损坏", "Damaged"),
    "missing": ("丢失", "Missing"),
    "moved": ("移位", "Moved"),
}

#: Boundary marker types (GB/T 17796-2009 行政区域界线测绘规范: 单立 one marker on the line,
#: 同号双立 a pair on both sides of it, 同号三立 three where three units meet).
MARKER_TYPE = {
    "single": ("单立", "Single"),
    "double": ("双立", "Double (pair)"),
    "triple": ("三立", "Triple"),
}

KINDS: dict[str, LayerKind] = {
    "eldercare_center": LayerKind(
        "eldercare_center",
        "养老服务设施",
        "Eldercare facility",
        POINT,
        (
            _id(),
            _name(),
            FieldSpec(
                "category",
                "str",
                "类别",
                "Category",
                required=True,
                choices=ELDERCARE_CATEGORIES,
            ),
            FieldSpec("beds", "int", "床位数", "Beds", unit="张", minimum=0),
            FieldSpec(
                "floor_area_m2",
                "float",
                "建筑面积",
                "Floor area",
                unit="m²",
                minimum=0,
                exclusive_minimum=True,
            ),
            FieldSpec(
                "service_types",
                "list",
                "服务类型",
                "Service types",
                choices=ELDERCARE_SERVICES,
            ),
            FieldSpec("status", "str", "状态", "Status", choices=FACILITY_STATUS),
            _ADDRESS,
            _ADMIN_CODE,
            _SOURCE,
        ),
    ),
    "community_service_room": LayerKind(
        "community_service_room",
        "社区综合服务设施",
        "Community service room",
        POINT,
        (
            _id(),
            _name(),
            FieldSpec(
                "floor_area_m2",
                "float",
                "建筑面积",
                "Floor area",
                required=True,
                unit="m²",
                minimum=0,
                exclusive_minimum=True,
            ),
            FieldSpec(
                "resident_share",
                "float",
                "居民活动用房占比",
                "Share used for residents",
                minimum=0,
                maximum=1,
            ),
            FieldSpec("status", "str", "状态", "Status", choices=FACILITY_STATUS),
            _ADDRESS,
            _ADMIN_CODE,
            _SOURCE,
        ),
    ),
    "shelter": LayerKind(
        "shelter",
        "应急避难场所",
        "Emergency shelter",
        POINT + AREA,
        (
            _id(),
            _name(),
            FieldSpec(
                "shelter_class",
                "str",
                "场所类别",
                "Shelter class (GB 51143)",
                required=True,
                choices=SHELTER_CLASSES,
            ),
            FieldSpec(
                "effective_area_m2",
                "float",
                "有效避难面积",
                "Effective area",
                required=True,
                unit="m²",
                minimum=0,
                exclusive_minimum=True,
            ),
            FieldSpec(
                "capacity_persons",
                "int",
                "可容纳人数",
                "Capacity",
                unit="人",
                minimum=0,
            ),
            FieldSpec("status", "str", "状态", "Status", choices=FACILITY_STATUS),
            _ADDRESS,
            _ADMIN_CODE,
            _SOURCE,
        ),
    ),
    "supply_depot": LayerKind(
        "supply_depot",
        "救灾物资储备库",
        "Relief-material depot",
        POINT,
        (
            _id(),
            _name(),
            FieldSpec("level", "str", "级别", "Level", required=True, choices=DEPOT_LEVELS),
            *(
                FieldSpec(
                    f"stock_{item}",
                    "float" if unit in ("L", "kg") else "int",
                    f"库存：{zh}",
                    f"Stock: {en}",
                    unit=unit,
                    minimum=0,
                )
                for item, (zh, en, unit) in RELIEF_ITEMS.items()
            ),
            FieldSpec("status", "str", "状态", "Status", choices=FACILITY_STATUS),
            _ADDRESS,
            _ADMIN_CODE,
            _SOURCE,
        ),
    ),
    "admin_unit": LayerKind(
        "admin_unit",
        "行政区域",
        "Administrative unit",
        AREA,
        (
            FieldSpec("adcode", "str", "行政区划代码", "Division code", required=True),
            _name("名称"),
            FieldSpec("level", "str", "层级", "Level", required=True, choices=ADMIN_LEVELS),
            FieldSpec("parent_adcode", "str", "上级区划代码", "Parent division code"),
            FieldSpec("households", "int", "户数", "Households", minimum=0),
            _SOURCE,
        ),
        id_field="adcode",
    ),
    "boundary_marker": LayerKind(
        "boundary_marker",
        "界桩",
        "Boundary marker",
        POINT,
        (
            FieldSpec("id", "str", "界桩编号", "Marker code", required=True),
            FieldSpec("name", "str", "名称", "Name"),
            FieldSpec("unit_a", "str", "相邻区划甲", "Unit A (code)", required=True),
            FieldSpec("unit_b", "str", "相邻区划乙", "Unit B (code)", required=True),
            FieldSpec("status", "str", "状态", "Status", required=True, choices=MARKER_STATUS),
            FieldSpec("marker_type", "str", "界桩类型", "Marker type", choices=MARKER_TYPE),
            FieldSpec("installed_year", "int", "埋设年份", "Year installed", minimum=1949),
            FieldSpec("last_inspected", "date", "最近检查日期", "Last inspected"),
            _SOURCE,
        ),
        name_field="name",
    ),
    "demand": LayerKind(
        "demand",
        "人口需求点",
        "Demand (population)",
        POINT + AREA,
        (
            _id(),
            FieldSpec("name", "str", "名称", "Name"),
            FieldSpec(
                "population",
                "int",
                "常住人口",
                "Population",
                required=True,
                unit="人",
                minimum=0,
            ),
            FieldSpec(
                "aged_60_plus",
                "int",
                "60岁及以上人口",
                "Aged 60+",
                required=True,
                unit="人",
                minimum=0,
            ),
            FieldSpec("households", "int", "户数", "Households", unit="户", minimum=0),
            _ADMIN_CODE,
            _SOURCE,
        ),
    ),
    "road": LayerKind(
        "road",
        "道路",
        "Road",
        LINE,
        (
            _id("道路编号"),
            FieldSpec("name", "str", "道路名称", "Road name"),
            FieldSpec("fclass", "str", "道路等级", "Road class", required=True),
            FieldSpec("oneway", "str", "单行", "One-way"),
            FieldSpec("maxspeed", "float", "限速", "Speed limit", unit="km/h", minimum=0),
            FieldSpec("bridge", "bool", "桥梁", "Bridge"),
            FieldSpec("tunnel", "bool", "隧道", "Tunnel"),
            _SOURCE,
        ),
    ),
}


def get_kind(name: str) -> LayerKind:
    """The layer kind called ``name``; the error lists the kinds that exist."""
    try:
        return KINDS[name]
    except KeyError:
        known = ", ".join(sorted(KINDS))
        msg = f"unknown layer kind '{name}'; expected one of: {known}"
        raise UnknownIdError(msg) from None


def in_service(gdf: DataFrameT) -> DataFrameT:
    """The records of a facility layer that serve residents (:data:`IN_SERVICE_STATUSES`).

    A layer without a ``status`` column is returned as it is.
    """
    if "status" not in gdf.columns:
        return gdf
    status = gdf["status"]
    return gdf[status.isna() | status.isin(sorted(IN_SERVICE_STATUSES))]


#: Headers seen in bureau registries and exports, per canonical field, besides the field's own
#: name and zh/en labels (which always match). Headers are compared after normalisation (case,
#: spaces/underscores/hyphens and a unit suffix such as "(m²)" or "（张）" ignored), so "Floor
#: Area", "floor-area" and "floor_area (m2)" are one header. A header maps to a field only in a
#: kind that has the field: "类别"/"type" is ``category`` for eldercare and ``shelter_class``
#: for shelters. Shelters deliberately do not map a bare "面积"/"area": GB 51143 separates the
#: site area (用地面积) from the effective shelter area, and taking one for the other overstates
#: capacity, so such a header is only named as a likely match (:data:`HEADER_LOOKALIKES`).
HEADER_ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("编号", "编码", "代码", "序号", "机构编号", "机构代码", "设施编号", "fid",
           "identifier", "code", "no"),
    "name": ("名称", "机构名称", "设施名称", "场所名称", "单位名称", "站点名称", "中文名称", "全称",
             "name_zh", "name_cn", "facility name", "site name", "title"),
    "address": ("地址", "详细地址", "地点", "所在地址", "机构地址", "addr", "street address"),
    "beds": ("床位", "床位数", "床位数量", "核定床位", "核定床位数", "床位总数", "设计床位数",
             "bed", "bed count", "number of beds", "beds total"),
    "floor_area_m2": ("建筑面积", "面积", "用房面积", "服务用房面积", "用房建筑面积", "floor_area",
                      "area", "area_m2", "floor area", "building area", "gross floor area",
                      "gfa"),
    "effective_area_m2": ("有效避难面积", "有效面积", "避难面积", "可用避难面积", "effective_area",
                          "effective area", "shelter area", "refuge area"),
    "capacity_persons": ("可容纳人数", "容纳人数", "避难人数", "可容纳避难人数", "容量", "避难容量",
                         "capacity", "shelter capacity", "max persons"),
    "population": ("人口", "常住人口", "人口数", "总人口", "人口总数", "常住人口数", "居民人数",
                   "pop", "total population", "pop_total", "residents"),
    "aged_60_plus": ("60岁及以上人口", "60岁以上人口", "60周岁及以上人口", "60周岁以上人口",
                     "60岁以上", "60岁及以上", "老年人口", "老年人口数", "老年人数", "aged 60+",
                     "aged60", "age 60+", "60+", "pop_60plus", "over 60", "elderly"),
    "households": ("户数", "总户数", "家庭户数", "住户数", "household", "hh"),
    "admin_code": ("所属行政区划代码", "行政区划代码", "区划代码", "社区代码", "所属区划代码",
                   "所属社区代码", "街道代码", "adcode", "admin code", "division code"),
    "adcode": ("行政区划代码", "区划代码", "区划编码", "统计用区划代码", "code", "division code"),
    "parent_adcode": ("上级区划代码", "上级代码", "parent code", "parent adcode"),
    "status": ("状态", "运行状态", "运营状态", "使用状态", "界桩状态", "现状", "state",
               "operating status"),
    "category": ("类别", "类型", "机构类型", "机构类别", "设施类型", "设施类别", "type", "class",
                 "facility type", "kind"),
    "shelter_class": ("场所类别", "避难场所类别", "类别", "类型", "场所类型", "避难场所类型",
                      "class", "type", "shelter class", "shelter type"),
    "level": ("级别", "层级", "等级", "行政级别", "区划级别", "储备库级别", "admin level", "tier"),
    "service_types": ("服务类型", "服务项目", "服务内容", "services", "service type"),
    "resident_share": ("居民活动用房占比", "居民用房占比", "居民活动用房比例", "resident share"),
    "installed_year": ("埋设年份", "埋设年代", "设立年份", "year installed", "year"),
    "last_inspected": ("最近检查日期", "检查日期", "巡查日期", "最近巡查日期", "last inspection",
                       "inspected"),
    "fclass": ("道路等级", "道路类型", "highway", "road class", "class", "type"),
    "maxspeed": ("限速", "最高限速", "speed limit", "max speed"),
    "source": ("数据来源", "来源", "data source"),
    **{
        f"stock_{item}": (zh, f"{zh}数", f"{zh}数量", f"库存{zh}", en.lower(), item)
        for item, (zh, en, _unit) in RELIEF_ITEMS.items()
    },
}  # fmt: skip

#: Headers that may well be a field but are not taken for it without being told (a shelter's
#: "面积" may be its site area; "人数" may count staff). When a required field is missing, a
#: column named like this, or one close to the field's names, is reported as the likely match.
HEADER_LOOKALIKES: dict[str, tuple[str, ...]] = {
    "effective_area_m2": ("面积", "area", "用地面积", "总面积", "占地面积", "场地面积", "area_m2"),
    "capacity_persons": ("人数", "规模", "persons", "people"),
    "floor_area_m2": ("占地面积", "用地面积", "总面积"),
    "population": ("户籍人口", "人数"),
    "aged_60_plus": ("老人", "老年人", "60岁"),
    "shelter_class": ("级别", "等级", "性质", "场所性质", "level"),
    "category": ("性质", "机构性质", "服务类别", "级别"),
    "level": ("类别", "类型", "type", "class"),
    "id": ("统一社会信用代码", "objectid", "key"),
}  # fmt: skip


_UNIT_SUFFIX = re.compile(r"\s*[（(\[【].*?[)）\]】]\s*$")
_UNIT_TAIL = re.compile(r"[\s_/\-]+(?:m2|m²|㎡|sqm|平方米|km/h)$")
_SEPARATORS = re.compile(r"[\s_\-.]+")


def normalize_header(name: object) -> str:
    """A column header as compared with field names and :data:`HEADER_ALIASES`.

    Byte-order mark, surrounding space, a unit suffix ("(m²)", "（张）", "_m2", "/平方米") and
    case are dropped, and runs of spaces, underscores, hyphens and dots become one underscore:
    "Floor Area (m2)", "floor-area" and "FLOOR_AREA" all give "floor_area".
    """
    text = _UNIT_SUFFIX.sub("", str(name).strip().lstrip("\ufeff")).strip().lower()
    text = _UNIT_TAIL.sub("", text)
    return _SEPARATORS.sub("_", text).strip("_")
