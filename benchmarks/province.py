"""Benchmark: a province on Dask (1 and 2 local workers) against the single-process city runs.

The province (:func:`geo_minzheng.province.build_test_province`): the real networks of the
project (Changchun with the demo scenario, the OSM extracts of Beijing, Shenzhen and Guixi) and
46 synthetic grid cities of 105 x 105 crossings (43,680 directed walk edges and 21,700 demand
points each, 2 x 2 districts): 50 cities, >= 2,000,000 directed edges, >= 1,000,000 demand
points, written once to a GeoPackage (cached next to the script's output).

Measured end to end, each from the same province file:

* ``single``: the plain single-process run, :func:`geo_minzheng.workflows.run_coverage` city
  after city in this process (reading each city's layers, building its network, coverage with
  gap areas; :func:`geo_minzheng.province.single_process`);
* ``single_same_work``: the same, without the gap areas (the province run draws none): network
  and :func:`geo_minzheng.coverage.analyze` with ``gaps=False``, city after city;
* ``province_1`` / ``province_2``: :func:`geo_minzheng.province.run_province` on a local
  cluster of 1 / 2 worker processes: cluster start, every city's network, every partition,
  stitching, and the run's GeoPackage with every demand point's results.

It prints ``province_2_workers_vs_1 ratio=X`` (goal >= 1.7 on 2 cores),
``province_vs_single_process ratio=Y`` (single / province_2, goal >= 1.5),
``province_vs_single_process_same_work ratio=Z``, the peak memory of each worker, and checks
that the province run's tables and per-point times equal the single-process runs.

Run: ``nice .venv/bin/python benchmarks/province.py [--cities 50] [--grid 105]
[--demand 21700] [--out /tmp/gm-province-bench]``.
"""

from __future__ import annotations

import argparse
import gc
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from geo_minzheng import coverage, workflows
from geo_minzheng import province as pv


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def single_runs(source: pv.ProvinceFile, p: pv.ProvinceParams) -> tuple[float, dict]:
    """The plain workflow, city after city; its tables and per-point minutes for the check."""
    kept: dict[str, tuple[pd.DataFrame, dict[str, np.ndarray]]] = {}
    gc.collect()
    t0 = time.perf_counter()
    for city in source.cities():
        run = pv.single_process(source, city.code, p)
        demand = run.result.demand
        times = {c: demand[c].to_numpy(float) for c in demand.columns if c.startswith("time_min_")}
        kept[city.code] = (run.result.table, times)
        del run
    return time.perf_counter() - t0, kept


def same_work_runs(source: pv.ProvinceFile, p: pv.ProvinceParams) -> float:
    """Network and coverage tables per city, no gap areas: the work a province run does."""
    cov = p.coverage_params()
    gc.collect()
    t0 = time.perf_counter()
    for city in source.cities():
        layers = source.city_layers(city.code)
        engine = workflows.engine_for(workflows.road_network(layers, p.network_params()))
        facilities = workflows.facility_sets(
            layers, workflows.default_facility_layers(layers), categories=cov.categories
        )
        coverage.analyze(
            workflows.demand_layer(layers),
            facilities,
            engine,
            breaks_min=cov.breaks_min,
            gdf_units=workflows.units_layer(layers),
            gaps=False,
            max_snap_m=cov.max_snap_m,
        )
    return time.perf_counter() - t0


def province_run(
    source: pv.ProvinceFile, p: pv.ProvinceParams, workers: int, out: Path
) -> tuple[float, pv.ProvinceRun]:
    folder = out / f"runs-{workers}"
    shutil.rmtree(folder, ignore_errors=True)
    gc.collect()
    t0 = time.perf_counter()
    run = pv.run_province(source, p, out=folder, run_id=f"bench_{workers}", n_workers=workers)
    return time.perf_counter() - t0, pv.check_complete(run)


def check_equal(run: pv.ProvinceRun, kept: dict) -> bool:
    for code, (table, times) in kept.items():
        pd.testing.assert_frame_equal(run.city_table(code), table, check_exact=True)
        demand = run.city_demand(code)
        for column, values in times.items():
            np.testing.assert_array_equal(demand[column].to_numpy(float), values)
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cities", type=int, default=50, help="cities in all (4 are real)")
    parser.add_argument("--grid", type=int, default=105, help="crossings per side, synthetic")
    parser.add_argument("--demand", type=int, default=21_700, help="demand points per city")
    parser.add_argument("--out", type=Path, default=Path("/tmp/gm-province-bench"))
    parser.add_argument("--no-same-work", action="store_true", help="skip that baseline")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"province-{args.cities}-{args.grid}-{args.demand}.gpkg"
    t0 = time.perf_counter()
    if not path.exists():
        pv.build_test_province(
            path,
            synthetic_cities=args.cities - 4,
            grid_n=args.grid,
            demand_per_city=args.demand,
        )
    source = pv.ProvinceFile(path)
    print(f"province file: {path} ({time.perf_counter() - t0:.1f} s to build or find)")
    p = pv.ProvinceParams()

    t_2, run_2 = province_run(source, p, 2, args.out)
    report = run_2.report()
    print(
        f"cities={report['cities']} partitions={report['partitions']} "
        f"directed_edges={report['directed_edges']:,} demand_points={report['demand_points']:,}"
    )
    print(f"province_2_workers: {t_2:.1f} s {run_2.timings_s}, peak MB {run_2.worker_peak_mb}")
    t_1, run_1 = province_run(source, p, 1, args.out)
    print(f"province_1_worker: {t_1:.1f} s {run_1.timings_s}, peak MB {run_1.worker_peak_mb}")
    del run_1
    t_single, kept = single_runs(source, p)
    print(f"single_process: {t_single:.1f} s, peak MB of the process {_peak_mb():.0f}")
    print(
        f"equal to the single-process runs (tables, per-point minutes): {check_equal(run_2, kept)}"
    )
    del kept
    if not args.no_same_work:
        t_same = same_work_runs(source, p)
        print(f"single_process_same_work (no gap areas): {t_same:.1f} s")
    print(f"province_2_workers_vs_1 ratio={t_1 / t_2:.2f}")
    print(f"province_vs_single_process ratio={t_single / t_2:.2f}")
    if not args.no_same_work:
        print(f"province_vs_single_process_same_work ratio={t_same / t_2:.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
