"""Routers of the API: OGC API – Features, analyses, web map pages."""
