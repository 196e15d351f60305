"""Web maps of geo-minzheng layers (folium/Leaflet): rendering, base maps, vendored assets."""

from maps import assets, basemaps, render

__all__ = ["assets", "basemaps", "render"]
