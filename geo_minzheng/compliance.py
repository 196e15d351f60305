"""Standards compliance of admin units: eldercare floor area, beds and service-circle coverage.

Each admin unit is checked against the versioned norms of :mod:`geo_minzheng.standards` (floor
area per 100 households by province, beds per 1000 residents aged 60+, the 15-minute life circle of
GB 50180-2018): met or not, and by how much, with the standard cited on every row.
"""

from __future__ import annotations

from collections.abc import Sequence

import geopandas as gpd
import numpy as np
import pandas as pd

from geo_minzheng import params
from geo_minzheng import standards as gm_standards
from geo_minzheng.admin_units import unit_membership
from geo_minzheng.coverage import CoverageResult


def compliance(
    result: CoverageResult,
    gdf_units: gpd.GeoDataFrame,
    gdf_eldercare: gpd.GeoDataFrame,
    *,
    province: str | None = None,
    existing: bool = True,
    area_categories: Sequence[str] = ("home_care_center", "day_care_center"),
    coverage_kind: str | None = "home_care_center",
    coverage_break_min: float = params.DEFAULT_SITING_BREAK_MIN,
    coverage_target_share: float = 1.0,
) -> pd.DataFrame:
    """Compliance of each admin unit with the eldercare norms: met / not met and by how much.

    Three checks per unit, one row each:

    * ``floor_area_per_100_households``: community eldercare floor area (facilities of
      ``area_categories`` in the unit) per 100 households against the provincial or national
      norm (:func:`geo_minzheng.standards.floor_area_norm`). Households come from the unit's
      ``households`` field, else from the demand's ``households``, else are estimated as
      population / 2.62 (2020 census mean); ``households_source`` says which.
    * ``beds_per_1000_aged``: beds of all eldercare facilities in the unit per 1000 residents
      aged 60+ against the national target's lower bound (35).
    * ``coverage``: share of residents aged 60+ within ``coverage_break_min`` of a
      ``coverage_kind`` facility against ``coverage_target_share`` (full coverage by default:
      the 15-minute home-eldercare circle's goal); skipped when ``coverage_kind`` is None.

    Returns
    -------
    pandas.DataFrame
        unit, unit_name, level, check, value, target, unit_of_measure, met, shortfall
        (what is missing: m², beds or persons), standard, confirmed, households_source.
    """
    area_norm, area_from = gm_standards.floor_area_norm(province, existing=existing)
    beds_norm = gm_standards.beds_norm()
    hh_size = gm_standards.persons_per_household()
    units = gdf_units.reset_index(drop=True)
    demand = result.demand
    rows, unit_no, info = unit_membership(demand, units)
    n_units = len(info)
    pop = np.bincount(
        unit_no, weights=demand["population"].to_numpy(float)[rows], minlength=n_units
    )
    aged = np.bincount(
        unit_no, weights=demand["aged_60_plus"].to_numpy(float)[rows], minlength=n_units
    )
    dem_hh = None
    if "households" in demand.columns:
        hh_vals = pd.to_numeric(demand["households"], errors="coerce")
        if hh_vals.notna().all():
            dem_hh = np.bincount(unit_no, weights=hh_vals.to_numpy(float)[rows], minlength=n_units)
    unit_hh = (
        pd.to_numeric(units["households"], errors="coerce").to_numpy(float)
        if "households" in units.columns
        else np.full(n_units, np.nan)
    )
    households = np.where(np.isfinite(unit_hh) & (unit_hh > 0), unit_hh, np.nan)
    source = np.where(np.isfinite(households), "admin_unit", "").astype(object)
    if dem_hh is not None:
        fill = ~np.isfinite(households)
        households[fill] = dem_hh[fill]
        source[fill] = "demand"
    est = ~np.isfinite(households)
    households[est] = pop[est] / float(hh_size.value)
    source[est] = f"estimated: population / {hh_size.value} ({hh_size.source})"

    fac = gdf_eldercare.reset_index(drop=True)
    frow, funit, _ = unit_membership(fac.assign(id=fac["id"].astype(str)), units)
    cat = fac["category"].to_numpy(object)[frow]
    area_w = pd.to_numeric(fac["floor_area_m2"], errors="coerce").fillna(0).to_numpy(float)[frow]
    area = np.bincount(
        funit, weights=area_w * np.isin(cat, list(area_categories)), minlength=n_units
    )
    beds_w = (
        pd.to_numeric(fac["beds"], errors="coerce").fillna(0).to_numpy(float)[frow]
        if "beds" in fac.columns
        else np.zeros(len(frow))
    )
    beds = np.bincount(funit, weights=beds_w, minlength=n_units)

    out = []
    req_area = households / 100.0 * float(area_norm.value)
    with np.errstate(invalid="ignore", divide="ignore"):
        per100 = np.where(households > 0, area / households * 100.0, np.nan)
        per1000 = np.where(aged > 0, beds / aged * 1000.0, np.nan)
    req_beds = aged / 1000.0 * float(beds_norm.value)
    for k in range(n_units):
        base = {
            "unit": info["adcode"].iat[k],
            "unit_name": info["name"].iat[k],
            "level": info["level"].iat[k],
            "households_source": source[k],
        }
        out.append(
            base
            | {
                "check": "floor_area_per_100_households",
                "value": per100[k],
                "target": float(area_norm.value),
                "unit_of_measure": "m²/100户",
                "met": bool(area[k] >= req_area[k]),
                "shortfall": max(0.0, req_area[k] - area[k]),
                "standard": f"{area_norm.source} [{area_from}]",
                "confirmed": area_norm.confirmed,
            }
        )
        out.append(
            base
            | {
                "check": "beds_per_1000_aged",
                "value": per1000[k],
                "target": float(beds_norm.value),
                "unit_of_measure": "张/千名老年人",
                "met": bool(beds[k] >= req_beds[k]),
                "shortfall": max(0.0, req_beds[k] - beds[k]),
                "standard": beds_norm.source,
                "confirmed": beds_norm.confirmed,
            }
        )
    if coverage_kind is not None:
        t = result.table
        sel = t[(t["kind"] == coverage_kind) & np.isclose(t["break_min"], coverage_break_min)]
        if sel.empty:
            msg = (
                f"coverage_kind '{coverage_kind}' at {coverage_break_min:g} min is not in the "
                f"result; kinds: {result.kinds}, breaks: {result.provenance.get('breaks_min')}"
            )
            raise ValueError(msg)
        sel = sel.set_index("unit")
        gb = gm_standards.load("gb50180_2018")
        for k in range(n_units):
            code = info["adcode"].iat[k]
            share = sel["share_aged_60_plus"].get(code, np.nan)
            aged_k = sel["aged_60_plus"].get(code, 0)
            covered = sel["covered_aged_60_plus"].get(code, 0)
            need = int(np.ceil(coverage_target_share * aged_k - 1e-9)) - int(covered)
            out.append(
                {
                    "unit": code,
                    "unit_name": info["name"].iat[k],
                    "level": info["level"].iat[k],
                    "households_source": source[k],
                    "check": f"coverage_{coverage_kind}_{coverage_break_min:g}min",
                    "value": share,
                    "target": coverage_target_share,
                    "unit_of_measure": "share of aged 60+",
                    "met": bool(need <= 0),
                    "shortfall": float(max(0, need)),
                    "standard": f"{gb.label} {coverage_break_min:g}-minute life circle",
                    "confirmed": False,
                }
            )
    table = pd.DataFrame(out)
    return table.sort_values(["unit", "check"], kind="stable").reset_index(drop=True)
