"""Admin-unit membership: which administrative units (district, city, ...) each record belongs to.

Analyses count people and facilities per unit at every level the unit layer holds; a record's own
``admin_code`` is used when it names a unit (its ancestors via ``parent_adcode`` count it too), the
unit polygons otherwise. The boundary work (hierarchy, shared lines, markers) builds on this module.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd

from geo_minzheng.demand import representative_points


def unit_membership(
    gdf_demand: gpd.GeoDataFrame, gdf_units: gpd.GeoDataFrame | None
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Which admin units each demand row belongs to, at every level the unit layer holds.

    A demand record's ``admin_code`` is used when it names a unit (and the unit's ancestors via
    ``parent_adcode`` also count it); records without one are placed by a spatial join with the
    unit polygons, which also counts them in every overlapping level (district and city).

    Returns
    -------
    (rows, units, unit_info)
        Membership pairs (demand row, unit number) and one row per unit: adcode, name, level.
    """
    if gdf_units is None:
        if "admin_code" not in gdf_demand.columns:
            return (
                np.zeros(0, int),
                np.zeros(0, int),
                pd.DataFrame(columns=["adcode", "name", "level"]),
            )
        codes = gdf_demand["admin_code"].astype("string")
        known = codes.notna().to_numpy()
        info = pd.DataFrame({"adcode": sorted(codes[known].unique())})
        info["name"] = info["adcode"]
        info["level"] = None
        pos = pd.Index(info["adcode"]).get_indexer(codes[known])
        return np.flatnonzero(known), pos, info
    units = gdf_units.reset_index(drop=True)
    info = pd.DataFrame(
        {
            "adcode": units["adcode"].astype(str),
            "name": units["name"] if "name" in units.columns else units["adcode"].astype(str),
            "level": units["level"] if "level" in units.columns else None,
        }
    )
    index = pd.Index(info["adcode"])
    n = len(gdf_demand)
    rows_parts: list[np.ndarray] = []
    unit_parts: list[np.ndarray] = []
    by_code = np.zeros(n, dtype=bool)
    if "admin_code" in gdf_demand.columns:
        codes = gdf_demand["admin_code"].astype("string").to_numpy(dtype=object, na_value=None)
        pos = index.get_indexer(pd.Series(codes, dtype=object))
        by_code = pos >= 0
        parents = _parent_map(units)
        parent_pos = index.get_indexer(
            pd.Series([parents.get(c) for c in info["adcode"]], dtype=object)
        )
        for _ in range(8):  # admin trees are at most 5 levels deep; guards against cycles
            ok = pos >= 0
            if not ok.any():
                break
            rows_parts.append(np.flatnonzero(ok))
            unit_parts.append(pos[ok])
            pos = np.where(ok, parent_pos[np.maximum(pos, 0)], -1)
    rest = np.flatnonzero(~by_code)
    if len(rest):
        pts = representative_points(gdf_demand.iloc[rest])[["geometry"]].to_crs(units.crs)
        pts["_row"] = rest
        joined = gpd.sjoin(pts, units[["geometry"]], how="inner", predicate="intersects")
        rows_parts.append(joined["_row"].to_numpy())
        unit_parts.append(joined["index_right"].to_numpy())
    if not rows_parts:
        return np.zeros(0, int), np.zeros(0, int), info
    rows = np.concatenate(rows_parts)
    unit = np.concatenate(unit_parts)
    pairs = np.unique(np.stack([rows, unit]), axis=1)
    return pairs[0], pairs[1], info


def _parent_map(units: pd.DataFrame) -> dict[str, str]:
    """Each unit's parent adcode, from ``parent_adcode`` (empty when the layer has none)."""
    if "parent_adcode" not in units.columns:
        return {}
    par = units["parent_adcode"]
    return {str(c): str(p) for c, p in zip(units["adcode"], par, strict=True) if pd.notna(p) and p}
