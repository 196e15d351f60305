"""The declarative layer catalog (``layers/catalog.yml``): which layers exist, where, and how shown.

The catalog is the one place where a bureau declares its layers: file, kind, titles in Chinese and
English, column mapping, source CRS, map style and what an editor may change (see
:class:`LayerEntry`: ``editable``, ``editable_fields``, ``geometry_editable``, ``allow_create``,
``allow_delete``; an admin may change anything, a viewer nothing). It is validated when loaded
(pydantic v2), so a typo fails at start-up with the entry and field named, not later inside a
request. ``${VAR}`` and ``${VAR:-default}`` in any string are taken from the environment (e.g.
``${GEO_MINZHENG_DATA:-data}``); relative source paths are relative to the catalog's folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import geopandas as gpd
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from geo_minzheng import io as gm_io
from geo_minzheng._errors import CatalogError, UnknownIdError
from geo_minzheng.kinds import KINDS

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_COLOR = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")


class Style(BaseModel):
    """How a layer is drawn on a map (Leaflet path options; ``radius`` in pixels for points)."""

    model_config = ConfigDict(extra="forbid")

    color: str = "#3388ff"
    fill_color: str | None = None
    weight: float = Field(default=2.0, ge=0)
    fill_opacity: float = Field(default=0.4, ge=0, le=1)
    radius: float = Field(default=6.0, gt=0)
    icon: str | None = None

    @field_validator("color", "fill_color")
    @classmethod
    def _hex_colour(cls, value: str | None) -> str | None:
        if value is not None and not _COLOR.match(value):
            msg = f"a hex colour such as '#1a9641', got {value!r}"
            raise ValueError(msg)
        return value


class LayerEntry(BaseModel):
    """One layer of the catalog.

    ``id_field`` and ``name_field`` are the canonical ID and name columns of the layer as read
    (default: the kind's); ``fields`` maps canonical field names to the source file's columns for
    headers that are not recognised automatically; ``layer`` is the layer (GeoPackage) or sheet
    (XLSX) inside the source file, by default the entry's ID for a GeoPackage.

    What the API lets a key with the editor role do (an admin may do everything, a viewer only
    read): nothing unless ``editable``; then change the ``editable_fields`` of existing records,
    and only with ``geometry_editable`` move or reshape them, with ``allow_create`` add records,
    with ``allow_delete`` remove them. All default to no, so that a field inspector's key can
    record a marker's state but not move the marker, and a new kind of edit is a decision
    written in the catalog.
    """

    model_config = ConfigDict(extra="forbid")

    id: str
    kind: str
    title_zh: str
    title_en: str
    source: Path
    layer: str | None = None
    id_field: str | None = None
    name_field: str | None = None
    fields: dict[str, str] = Field(default_factory=dict)
    source_crs: str | None = None
    lon_field: str | None = None
    lat_field: str | None = None
    encoding: str | None = None
    style: Style = Field(default_factory=Style)
    editable: bool = False
    editable_fields: list[str] = Field(default_factory=list)
    #: Editors may change records' geometry (move a point, reshape an area).
    geometry_editable: bool = False
    #: Editors may add records (with every field; the kind's rules still apply).
    allow_create: bool = False
    #: Editors may remove records.
    allow_delete: bool = False
    scenario: bool = False

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in KINDS:
            msg = f"one of {', '.join(sorted(KINDS))}, got {value!r}"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _fill_and_check(self) -> LayerEntry:
        """Fill ID/name fields from the kind and check the field names the entry uses."""
        spec = KINDS[self.kind]
        if self.id_field is None:
            self.id_field = spec.id_field
        if self.name_field is None:
            self.name_field = spec.name_field
        if self.layer is None and self.source.suffix.lower() == ".gpkg":
            self.layer = self.id
        known = {f.name for f in spec.fields}
        for what, names in (
            ("fields", list(self.fields)),
            ("editable_fields", self.editable_fields),
            ("id_field", [self.id_field]),
        ):
            unknown = [n for n in names if n not in known]
            if unknown:
                msg = (
                    f"{what}: {', '.join(map(repr, unknown))} is not a field of kind "
                    f"'{self.kind}'; expected one of: {', '.join(sorted(known))}"
                )
                raise ValueError(msg)
        flags = {
            "editable_fields": bool(self.editable_fields),
            "geometry_editable": self.geometry_editable,
            "allow_create": self.allow_create,
            "allow_delete": self.allow_delete,
        }
        for name, given in flags.items():
            if given and not self.editable:
                msg = f"{name} is set but editable is false; set editable: true"
                raise ValueError(msg)
        return self

    def read(self, *, validate: bool = True) -> gpd.GeoDataFrame:
        """Read this layer (WGS84, canonical fields); see :func:`geo_minzheng.io.read_layer`."""
        gdf = gm_io.read_layer(
            self.source,
            kind=self.kind,
            layer=self.id,
            source_crs=self.source_crs,
            field_map=self.fields,
            lon_field=self.lon_field,
            lat_field=self.lat_field,
            encoding=self.encoding,
            validate=validate,
            layer_name=self.layer,
        )
        gdf.attrs.update({"title_zh": self.title_zh, "title_en": self.title_en})
        gdf.attrs["scenario"] = self.scenario
        return gdf


class Catalog(BaseModel):
    """The loaded catalog: ``entries`` by layer ID, and where it was loaded from."""

    model_config = ConfigDict(extra="forbid")

    path: Path | None = None
    title_zh: str | None = None
    title_en: str | None = None
    entries: dict[str, LayerEntry]

    def get(self, layer_id: str) -> LayerEntry:
        """The entry ``layer_id``; UnknownIdError lists the IDs that exist."""
        try:
            return self.entries[layer_id]
        except KeyError:
            known = ", ".join(self.entries) or "none"
            msg = f"unknown layer '{layer_id}'; the catalog has: {known}"
            raise UnknownIdError(msg) from None

    def read(self, layer_id: str, *, validate: bool = True) -> gpd.GeoDataFrame:
        """Read layer ``layer_id`` into WGS84 with canonical fields."""
        return self.get(layer_id).read(validate=validate)

    def read_all(self, *, validate: bool = True) -> dict[str, gpd.GeoDataFrame]:
        """Read every layer, in catalog order."""
        return {layer_id: entry.read(validate=validate) for layer_id, entry in self.entries.items()}


def _interpolate(value: Any, env: Mapping[str, str], where: str) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string of ``value``."""
    if isinstance(value, dict):
        return {
            k: _interpolate(v, env, f"{where}.{k}" if where else str(k)) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_interpolate(v, env, where) for v in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env and env[name] != "":
            return env[name]
        if default is not None:
            return default
        entry, _, field = where.partition(".")
        msg = (
            f"catalog entry '{entry}': field '{field or entry}' uses ${{{name}}} but the "
            f"environment variable {name} is not set; set it or write ${{{name}:-default}}"
        )
        raise CatalogError(msg)

    return _VAR.sub(replace, value)


def _pydantic_message(layer_id: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "entry"
        text = str(err["msg"]).removeprefix("Value error, ")
        lines.append(f"catalog entry '{layer_id}': field '{field}': {text}")
    return "\n".join(lines)


def _check_source(entry: LayerEntry) -> None:
    if not entry.source.exists():
        msg = (
            f"catalog entry '{entry.id}': field 'source': file not found: {entry.source} "
            "(relative paths are relative to the catalog file's folder)"
        )
        raise CatalogError(msg)
    if entry.source.suffix.lower() == ".gpkg" and entry.layer is not None:
        names = gm_io.layer_names(entry.source)  # LayerReadError naming the file if unreadable
        if entry.layer not in names:
            msg = (
                f"catalog entry '{entry.id}': field 'layer': GeoPackage {entry.source.name} has "
                f"no layer '{entry.layer}'; it has: {', '.join(names) or 'none'}"
            )
            raise CatalogError(msg)


def load_catalog(
    path: str | Path = "layers/catalog.yml",
    *,
    env: Mapping[str, str] | None = None,
    check_sources: bool = True,
) -> Catalog:
    """Load and validate a layer catalog.

    Parameters
    ----------
    path
        The catalog YAML file: a top-level ``layers:`` mapping of layer ID to entry (see
        docs/layers.md), plus optional ``title_zh``/``title_en``.
    env
        Variables for ``${VAR}`` interpolation; ``os.environ`` when omitted.
    check_sources
        Check that every source file (and GeoPackage layer) exists.

    Raises
    ------
    CatalogError
        Naming the entry and field: unknown kind or field, bad style, unset variable, missing file.
    """
    path = Path(path)
    if not path.exists():
        msg = f"layer catalog not found: {path}"
        raise CatalogError(msg)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:  # a folder, no permission, not UTF-8 text
        msg = f"layer catalog {path} cannot be read: {exc}"
        raise CatalogError(msg) from None
    except yaml.YAMLError as exc:
        msg = f"layer catalog {path} is not valid YAML: {exc}"
        raise CatalogError(msg) from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("layers"), dict):
        msg = f"layer catalog {path}: expected a top-level 'layers:' mapping of layer ID to entry"
        raise CatalogError(msg)
    env = os.environ if env is None else env
    base = path.resolve().parent
    entries: dict[str, LayerEntry] = {}
    for layer_id, body in raw["layers"].items():
        layer_id = str(layer_id)
        if not isinstance(body, dict):
            msg = f"catalog entry '{layer_id}': expected a mapping of fields, got {body!r}"
            raise CatalogError(msg)
        data = _interpolate(dict(body), env, layer_id)
        data.setdefault("id", layer_id)
        if data["id"] != layer_id:
            msg = f"catalog entry '{layer_id}': field 'id' must equal the key, got {data['id']!r}"
            raise CatalogError(msg)
        if "source" in data and not Path(str(data["source"])).is_absolute():
            data["source"] = base / str(data["source"])
        try:
            entry = LayerEntry.model_validate(data)
        except ValidationError as exc:
            raise CatalogError(_pydantic_message(layer_id, exc)) from None
        if check_sources:
            _check_source(entry)
        entries[layer_id] = entry
    header = _interpolate({k: v for k, v in raw.items() if k != "layers"}, env, "catalog")
    return Catalog(
        path=path.resolve(),
        title_zh=header.get("title_zh"),
        title_en=header.get("title_en"),
        entries=entries,
    )
