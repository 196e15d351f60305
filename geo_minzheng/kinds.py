"""The layer kinds geo-minzheng knows: fields, types, units, allowed values, geometry, labels.

Every layer a bureau loads is one of these kinds. Validation (``validation.py``), the catalog,
the maps and the API all read these specifications instead of hard-coding field names.
"""

from __future__ import annotations

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

#: Label carried by every generated record of the demo scenario (DEVELOPERS.md, shared/data/README).
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
