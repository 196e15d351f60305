"""Base map registry: OpenStreetMap tiles, 天地图 (Tianditu), an intranet tile server, or none.

A government intranet usually has no route to public tile servers, so every map can also be drawn
on its own tile server (``intranet``) or on a blank background (``none``); the layers themselves
are vector data embedded in the page. Tianditu's ``_w`` services are Web Mercator in CGCS2000,
which matches WGS84 to centimetres, so WGS84 layers line up with it without any GCJ-02 shift.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from geo_minzheng._errors import GeoMinzhengError, UnknownIdError

if TYPE_CHECKING:
    import folium

#: Attribution every map carries: the roads layer (and the OSM base map) are OpenStreetMap data.
OSM_ATTRIBUTION = (
    '© <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors (ODbL)'
)
OSM_TILES = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
#: 天地图 WMTS tile URL; ``{layer}`` is vec/cva/img/cia, ``{s}`` a subdomain 0-7, ``tk`` the key.
TIANDITU_TILES = (
    "https://t{s}.tianditu.gov.cn/{layer}_w/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0"
    "&LAYER={layer}&STYLE=default&TILEMATRIXSET=w&FORMAT=tiles"
    "&TILEMATRIX={{z}}&TILEROW={{y}}&TILECOL={{x}}&tk={token}"
)
TIANDITU_ATTRIBUTION = "© 天地图 (国家地理信息公共服务平台)"
#: Names accepted by :func:`get_basemap`.
BASEMAP_NAMES = ("osm", "tianditu", "intranet", "none")


class BasemapError(GeoMinzhengError, ValueError):
    """A base map is misconfigured (missing token, bad tile URL template)."""


@dataclass(frozen=True)
class TileSpec:
    """One tile service of a base map (a base map may stack several, e.g. roads + labels)."""

    url: str
    attribution: str
    subdomains: str = "abc"
    max_zoom: int = 19


@dataclass(frozen=True)
class BaseMap:
    """A selectable background: zero or more stacked tile services and a bilingual title."""

    name: str
    title_zh: str
    title_en: str
    tiles: tuple[TileSpec, ...] = field(default_factory=tuple)

    def title(self, lang: str = "zh") -> str:
        """The name shown in the layer control, in ``lang`` ('zh' or 'en')."""
        return self.title_zh if lang == "zh" else self.title_en

    @property
    def tile_urls(self) -> tuple[str, ...]:
        """The tile URL templates (the only network URLs a saved map may contain)."""
        return tuple(t.url for t in self.tiles)

    def add_to(
        self, m: folium.Map, *, lang: str = "zh", show: bool = True, control: bool = True
    ) -> folium.FeatureGroup:
        """Add this base map to ``m`` as one base layer (a radio button when ``control``).

        Stacked services (天地图 roads + annotation) are grouped so they switch together.
        """
        import folium

        group = folium.FeatureGroup(
            name=self.title(lang), overlay=False, control=control, show=show
        )
        for spec in self.tiles:
            folium.TileLayer(
                tiles=spec.url,
                attr=spec.attribution,
                name=self.title(lang),
                subdomains=spec.subdomains,
                max_zoom=spec.max_zoom,
                control=False,
                overlay=False,
            ).add_to(group)
        group.add_to(m)
        return group


def osm() -> BaseMap:
    """OpenStreetMap's standard tiles (public internet only; see the OSM tile usage policy)."""
    return BaseMap(
        "osm",
        "OpenStreetMap 地图",
        "OpenStreetMap",
        (TileSpec(OSM_TILES, OSM_ATTRIBUTION, subdomains="abc", max_zoom=19),),
    )


def tianditu(token: str | None) -> BaseMap:
    """天地图 vector map (vec_w) with Chinese annotation (cva_w); needs a 天地图 key (tk)."""
    if not token or not str(token).strip():
        msg = (
            "basemap 'tianditu' needs a 天地图 API key: pass tianditu_token='<key>' "
            "(apply at https://console.tianditu.gov.cn), got none"
        )
        raise BasemapError(msg)
    token = str(token).strip()
    return BaseMap(
        "tianditu",
        "天地图",
        "Tianditu",
        tuple(
            TileSpec(
                TIANDITU_TILES.format(layer=layer, token=token, s="{s}"),
                TIANDITU_ATTRIBUTION,
                subdomains="01234567",
                max_zoom=18,
            )
            for layer in ("vec", "cva")
        ),
    )


def intranet(url: str | None, *, attribution: str = "内网瓦片服务 / intranet tiles") -> BaseMap:
    """A tile server on the government intranet, given as an XYZ template with {z}, {x}, {y}."""
    missing = [p for p in ("{z}", "{x}", "{y}") if p not in (url or "")]
    if not url or missing:
        msg = (
            "basemap 'intranet' needs an XYZ tile URL template containing {z}, {x} and {y} "
            f"(e.g. 'http://tiles.gov.example/{{z}}/{{x}}/{{y}}.png'), got {url!r}"
        )
        raise BasemapError(msg)
    return BaseMap("intranet", "内网底图", "Intranet base map", (TileSpec(url, attribution),))


def blank() -> BaseMap:
    """No tiles: the layers on a plain background (works with no tile server at all)."""
    return BaseMap("none", "无底图", "No base map")


def get_basemap(
    name: str | BaseMap,
    *,
    tianditu_token: str | None = None,
    tile_url: str | None = None,
) -> BaseMap:
    """The base map called ``name`` ('osm', 'tianditu', 'intranet' or 'none').

    Parameters
    ----------
    name
        A registry name, or a :class:`BaseMap` which is returned as is.
    tianditu_token
        天地图 key, required for 'tianditu'.
    tile_url
        XYZ URL template of the intranet tile server, required for 'intranet'.
    """
    if isinstance(name, BaseMap):
        return name
    key = str(name).strip().lower()
    if key == "osm":
        return osm()
    if key == "tianditu":
        return tianditu(tianditu_token)
    if key == "intranet":
        return intranet(tile_url)
    if key in ("none", "blank"):
        return blank()
    known = ", ".join(BASEMAP_NAMES)
    msg = f"unknown basemap {name!r}; expected one of: {known}"
    raise UnknownIdError(msg)


def resolve(
    basemap: str | BaseMap | Sequence[str | BaseMap] | None,
    *,
    tianditu_token: str | None = None,
    tile_url: str | None = None,
) -> list[BaseMap]:
    """One or several base maps from names; the first is shown, the others are selectable."""
    if basemap is None:
        return [blank()]
    items = [basemap] if isinstance(basemap, str | BaseMap) else list(basemap)
    if not items:
        return [blank()]
    return [get_basemap(b, tianditu_token=tianditu_token, tile_url=tile_url) for b in items]
