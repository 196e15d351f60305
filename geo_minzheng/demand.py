"""The demand layer as analyses read it: its checks and its points.

Coverage, accessibility, siting and the admin-unit membership all read the same demand layer
(population points or blocks with ``id``, ``population`` and ``aged_60_plus``); the checks and the
point representation live here once so that each analysis asks for them by a public name.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from geo_minzheng._errors import LayerValidationError, Problem
from geo_minzheng.engine import id_strings


def check_demand(gdf_demand: gpd.GeoDataFrame, layer: str = "demand") -> np.ndarray:
    """Check the demand layer's fields, collecting every problem; return its IDs as strings.

    Parameters
    ----------
    gdf_demand
        Demand layer with ``id``, ``population`` and ``aged_60_plus`` and a defined CRS.
    layer
        The layer's name in messages.

    Returns
    -------
    numpy.ndarray
        The IDs as strings, in row order (the analyses key their results by them).

    Raises
    ------
    LayerValidationError
        Listing every missing column, duplicate ID, count that is not a number >= 0, aged-60+
        count above the population, and a missing CRS.
    """
    problems: list[Problem] = []
    for col in ("id", "population", "aged_60_plus"):
        if col not in gdf_demand.columns:
            problems.append(Problem(f"layer '{layer}'", col, "a column", "missing", "missing"))
    if problems:
        raise LayerValidationError(layer, problems)
    ids = id_strings(gdf_demand["id"])
    dup = pd.Series(ids, dtype=object).duplicated().to_numpy()  # (faster than Index.is_unique)
    for rid in pd.unique(ids[dup]):
        problems.append(Problem(f"{layer} '{rid}'", "id", "unique", "duplicate", "duplicate"))
    counts = {}
    for col in ("population", "aged_60_plus"):
        raw = gdf_demand[col]
        vals = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        bad = ~(vals >= 0)  # NaN (not a number) or negative
        for rid, value in zip(ids[bad], raw[bad], strict=True):
            problems.append(Problem(f"{layer} '{rid}'", col, "a number >= 0", repr(value)))
        counts[col] = vals
    pop, aged = counts["population"], counts["aged_60_plus"]
    over = (aged > pop) & (pop >= 0)
    for rid, a, p in zip(ids[over], aged[over], pop[over], strict=True):
        problems.append(
            Problem(f"{layer} '{rid}'", "aged_60_plus", f"<= population ({p:g})", f"{a:g}")
        )
    if gdf_demand.crs is None:
        problems.append(Problem(f"layer '{layer}'", "crs", "a defined CRS", "None", "crs"))
    if problems:
        raise LayerValidationError(layer, problems)
    return ids


def representative_points(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The layer with polygon records (blocks, communities) represented by an interior point.

    A point layer is returned as it is (not copied); otherwise a copy whose geometry is each
    record's representative point, which always lies inside its polygon (a centroid may not).
    """
    geom = gdf.geometry
    if (shapely.get_type_id(geom.to_numpy()) == 0).all():
        return gdf
    out = gdf.copy()
    out["geometry"] = geom.representative_point()
    return out
