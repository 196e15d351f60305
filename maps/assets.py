"""Vendored Leaflet/jQuery assets, so maps work on an intranet with no route to a CDN.

folium writes ``<script src>``/``<link href>`` tags pointing at public CDNs. A rendered map is
rewritten in one of two modes:

* ``inline``: every asset is copied into the HTML (images in CSS become ``data:`` URIs), giving a
  single file that works from ``file://`` with no network (``save_html(m, path, offline=True)``);
* ``served``: the tags point at ``<base_url>/...`` under :data:`STATIC_DIR`, which the API mounts
  (``use_served_assets(m, base_url="/static/vendor")``).

Only Leaflet 1.9.3 and jQuery 3.7.1 are vendored (see ``static/vendor/README.md``). folium's icon
stack (Bootstrap, Font Awesome, Glyphicons, Leaflet.awesome-markers) is dropped from maps that do
not use ``folium.Icon``; maps here draw points as CircleMarkers, which need no icon fonts. A map
that does use an unvendored asset raises :class:`OfflineAssetError` naming it, rather than
silently depending on a CDN.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from branca.element import Figure

from geo_minzheng._errors import GeoMinzhengError

#: The folder the API mounts at ``/static`` (vendored files are under ``vendor/``).
STATIC_DIR = Path(__file__).resolve().parent / "static"
VENDOR_DIR = STATIC_DIR / "vendor"

AssetMode = Literal["cdn", "served", "inline"]


class OfflineAssetError(GeoMinzhengError, RuntimeError):
    """A map needs a JavaScript/CSS file that is not vendored, so it would need the internet."""


@dataclass(frozen=True)
class Asset:
    """One vendored file and the CDN URLs folium (or a plugin) writes for it."""

    path: str  # relative to VENDOR_DIR
    urls: tuple[str, ...]

    @property
    def file(self) -> Path:
        """Absolute path of the vendored file."""
        return VENDOR_DIR / self.path


ASSETS: tuple[Asset, ...] = (
    Asset(
        "leaflet/leaflet.js",
        (
            "https://cdn.jsdelivr.net/npm/leaflet@1.9.3/dist/leaflet.js",
            "https://unpkg.com/leaflet@1.9.3/dist/leaflet.js",
        ),
    ),
    Asset(
        "leaflet/leaflet.css",
        (
            "https://cdn.jsdelivr.net/npm/leaflet@1.9.3/dist/leaflet.css",
            "https://unpkg.com/leaflet@1.9.3/dist/leaflet.css",
        ),
    ),
    Asset(
        "jquery/jquery.min.js",
        (
            "https://code.jquery.com/jquery-3.7.1.min.js",
            "https://cdn.jsdelivr.net/npm/jquery@3.7.1/dist/jquery.min.js",
        ),
    ),
)

#: folium's icon stack: only needed by ``folium.Icon`` (Leaflet.awesome-markers) markers.
ICON_STACK_URLS: tuple[str, ...] = (
    "https://cdn.jsdelivr.net/npm/bootstrap@5.2.2/dist/js/bootstrap.bundle.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/Leaflet.awesome-markers/2.0.2/leaflet.awesome-markers.js",
    "https://cdn.jsdelivr.net/npm/bootstrap@5.2.2/dist/css/bootstrap.min.css",
    "https://netdna.bootstrapcdn.com/bootstrap/3.0.0/css/bootstrap-glyphicons.css",
    "https://cdn.jsdelivr.net/npm/@fortawesome/fontawesome-free@6.2.0/css/all.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/Leaflet.awesome-markers/2.0.2/leaflet.awesome-markers.css",
    "https://cdn.jsdelivr.net/gh/python-visualization/folium/folium/templates/leaflet.awesome.rotate.min.css",
)

_BY_URL = {url: asset for asset in ASSETS for url in asset.urls}
_SCRIPT = re.compile(
    r"""<script\b[^>]*?\bsrc\s*=\s*["'](?P<url>[^"']+)["'][^>]*>\s*</script>""", re.I
)
_LINK = re.compile(r"""<link\b[^>]*?\bhref\s*=\s*["'](?P<url>[^"']+)["'][^>]*?/?>""", re.I)
_CSS_URL = re.compile(r"""url\(\s*["']?(?P<ref>[^"')]+?)["']?\s*\)""")
_SOURCE_MAP = re.compile(r"^\s*//# sourceMappingURL=.*$", re.M)
_MIME = {".png": "image/png", ".svg": "image/svg+xml", ".gif": "image/gif", ".woff2": "font/woff2"}


def _is_remote(url: str) -> bool:
    return url.startswith(("http://", "https://", "//"))


def _uses_icon_stack(html: str) -> bool:
    """Whether the page draws folium.Icon markers (the only users of the icon stack)."""
    return "L.AwesomeMarkers" in html


def _data_uri(path: Path) -> str:
    mime = _MIME.get(path.suffix.lower(), "application/octet-stream")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _inline_css(asset: Asset) -> str:
    """The stylesheet with its relative images embedded, so it needs no other file."""
    text = asset.file.read_text(encoding="utf-8")
    folder = asset.file.parent

    def embed(match: re.Match[str]) -> str:
        ref = match.group("ref")
        if ref.startswith(("data:", "#")) or _is_remote(ref):
            return match.group(0)
        return f'url("{_data_uri(folder / ref)}")'

    return _CSS_URL.sub(embed, _SOURCE_MAP.sub("", text))


def _inline_js(asset: Asset) -> str:
    text = _SOURCE_MAP.sub("", asset.file.read_text(encoding="utf-8"))
    # "</script" inside a string would end the inline block; "<\/" means the same in JS.
    return text.replace("</script", "<\\/script")


#: Leaflet finds its default marker images through a CSS path that an inlined page lacks.
_LEAFLET_ICON_FIX = (
    "<script>L.Icon.Default.imagePath='';L.Icon.Default.mergeOptions({{"
    "iconUrl:'{icon}',iconRetinaUrl:'{icon2x}',shadowUrl:'{shadow}'}});</script>"
)


def _leaflet_icon_fix() -> str:
    images = VENDOR_DIR / "leaflet" / "images"
    return _LEAFLET_ICON_FIX.format(
        icon=_data_uri(images / "marker-icon.png"),
        icon2x=_data_uri(images / "marker-icon-2x.png"),
        shadow=_data_uri(images / "marker-shadow.png"),
    )


def rewrite_html(html: str, *, mode: AssetMode, base_url: str = "/static/vendor") -> str:
    """Point (``served``) or copy (``inline``) every CDN asset of ``html`` to the vendored files.

    Raises
    ------
    OfflineAssetError
        If the page loads a remote script or stylesheet that is not vendored (a plugin, or
        ``folium.Icon`` markers that need icon fonts), naming each URL.
    """
    if mode == "cdn":
        return html
    if mode not in ("served", "inline"):
        msg = f"asset mode must be 'cdn', 'served' or 'inline', got {mode!r}"
        raise ValueError(msg)
    icons = _uses_icon_stack(html)
    missing: list[str] = []
    base = base_url.rstrip("/")

    def replace(match: re.Match[str], *, is_script: bool) -> str:
        url = match.group("url")
        if not _is_remote(url):
            return match.group(0)
        if not is_script and "stylesheet" not in match.group(0).lower():
            return match.group(0)
        asset = _BY_URL.get(url)
        if asset is None:
            if url in ICON_STACK_URLS and not icons:
                return ""
            missing.append(url)
            return match.group(0)
        if mode == "served":
            return match.group(0).replace(url, f"{base}/{asset.path}")
        if is_script:
            fix = _leaflet_icon_fix() if asset.path == "leaflet/leaflet.js" else ""
            return f"<script>{_inline_js(asset)}</script>{fix}"
        return f"<style>{_inline_css(asset)}</style>"

    out = _SCRIPT.sub(lambda mt: replace(mt, is_script=True), html)
    out = _LINK.sub(lambda mt: replace(mt, is_script=False), out)
    if missing:
        listed = "\n".join(f"  - {u}" for u in dict.fromkeys(missing))
        hint = (
            "folium.Icon markers need icon fonts that are not vendored; draw points with "
            "CircleMarker (maps.render does)"
            if icons
            else "vendor it under maps/static/vendor and list it in maps.assets.ASSETS"
        )
        msg = f"map needs assets that are not available offline ({hint}):\n{listed}"
        raise OfflineAssetError(msg)
    return out


class MapFigure(Figure):
    """A branca Figure that rewrites CDN asset URLs of everything it renders.

    ``asset_mode`` is 'cdn' (folium's behaviour) until :func:`use_served_assets` or an offline
    save changes it; ``_repr_html_``, ``save`` and ``render`` all go through :meth:`render`.
    """

    asset_mode: AssetMode = "cdn"
    asset_base_url: str = "/static/vendor"

    def render(self, **kwargs: object) -> str:
        """The full HTML page, with assets per ``asset_mode``."""
        from maps import render as _render  # late: render imports this module

        for child in list(self._children.values()):
            _render.prepare_for_render(child)
        html = super().render(**kwargs)
        return rewrite_html(html, mode=self.asset_mode, base_url=self.asset_base_url)


def map_figure(m: object) -> MapFigure:
    """The :class:`MapFigure` at the root of map ``m``, making the root one if it is a plain Figure.

    folium puts every Map into a plain ``Figure``; swapping its class keeps its children and
    header and only adds the rendering hook.
    """
    root = m.get_root()  # type: ignore[attr-defined]
    if isinstance(root, MapFigure):
        return root
    if type(root) is Figure:
        root.__class__ = MapFigure
        return root  # type: ignore[return-value]
    figure = MapFigure()
    figure.add_child(m)  # type: ignore[arg-type]
    return figure


def use_served_assets(m: object, base_url: str = "/static/vendor") -> object:
    """Make map ``m`` load Leaflet etc. from ``base_url`` (where the API serves ``STATIC_DIR``
    ``/vendor``) instead of public CDNs; returns ``m``.

    Use this for pages served by the API: the browser caches the files once for all maps.
    """
    figure = map_figure(m)
    figure.asset_mode = "served"
    figure.asset_base_url = base_url
    return m


def vendored_files() -> list[Path]:
    """Every vendored file, for packaging checks and the API's static mount."""
    return sorted(p for p in VENDOR_DIR.rglob("*") if p.is_file())
