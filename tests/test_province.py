# ruff: noqa: F811 - pytest fixtures imported from tests.test_store
"""Province runs (geo_minzheng.province): partitioned coverage on Dask equals the single run.

The test province holds the real networks of the project (Changchun's roads with the demo
scenario, the OSM extracts of Beijing, Shenzhen and Guixi) and one small synthetic grid city,
each a city with its own admin units. The reference is the plain single-process coverage
workflow (``workflows.run_coverage``) on each city's layers; the partitioned results must equal
it exactly: the tables frame for frame, and every demand point's nearest facility and minutes.
Dask runs on a local cluster of 2 worker processes (the machine has 2 cores).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyogrio
import pytest

from geo_minzheng import province as pv
from geo_minzheng._errors import PartitionError
from tests.test_store import new_database, postgis_server  # noqa: F401 - fixture

pytestmark = pytest.mark.slow

PARAMS = pv.ProvinceParams()


@pytest.fixture(scope="module")
def province(tmp_path_factory: pytest.TempPathFactory) -> pv.ProvinceFile:
    path = tmp_path_factory.mktemp("province") / "province.gpkg"
    return pv.build_test_province(path, synthetic_cities=1, grid_n=24, demand_per_city=1_200)


@pytest.fixture(scope="module")
def reference(province: pv.ProvinceFile) -> dict[str, object]:
    """The single-process coverage run of every city."""
    return {c.code: pv.single_process(province, c.code, PARAMS) for c in province.cities()}


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


def _kinds(frame: pd.DataFrame) -> list[str]:
    return [c.removeprefix("nearest_") for c in frame.columns if c.startswith("nearest_")]


def assert_same_as_single(run_table: pd.DataFrame, demand: pd.DataFrame, ref: object) -> None:
    """The city's stitched table and per-point results equal the single run's, exactly."""
    pd.testing.assert_frame_equal(run_table, ref.result.table, check_exact=True)  # type: ignore[attr-defined]
    single = ref.result.demand  # type: ignore[attr-defined]
    assert demand["id"].tolist() == single["id"].astype(str).tolist()
    assert _kinds(demand) == _kinds(single)
    for kind in _kinds(demand):
        np.testing.assert_array_equal(
            demand[f"time_min_{kind}"].to_numpy(float), single[f"time_min_{kind}"].to_numpy(float)
        )
        assert demand[f"nearest_{kind}"].tolist() == single[f"nearest_{kind}"].tolist()


def test_the_test_province_holds_real_and_synthetic_cities(province: pv.ProvinceFile) -> None:
    cities = province.cities()
    codes = [c.code for c in cities]
    assert codes == ["220100", "110108", "440307", "360681", "990100"]
    units = province.units()
    # Changchun's five real districts, two demo halves per OSM city, 2 x 2 synthetic districts
    assert units.groupby("city").size().to_dict() == {
        "110108": 2, "220100": 5, "360681": 2, "440307": 2, "990100": 4,
    }  # fmt: skip
    demand = province.read("990100", "demand")
    assert len(demand) == 1_200
    assert (demand["source"] == pv.DEMO_SCENARIO_LABEL).all()
    # the synthetic grid: 24 x 24 crossings, one line per row and column
    assert len(province.read("990100", "roads")) == 48


def test_partitions_equal_the_single_process_run(
    province: pv.ProvinceFile, reference: dict[str, object]
) -> None:
    crossing = 0
    for city in province.cities():
        plan = pv.plan_city(province, city.code, PARAMS)
        rows = np.concatenate([s.rows for s in plan.specs.values()])
        # each demand point belongs to exactly one partition
        assert np.array_equal(np.sort(rows), np.arange(plan.summary.n_demand))
        parts = [pv.run_partition(plan, unit, PARAMS) for unit in plan.specs]
        table = pv.stitch_table(plan.summary, parts)
        demand = pv.stitch_demand(plan.summary, parts)
        assert_same_as_single(table, demand, reference[city.code])
        # residents whose nearest home-care centre lies in another unit: the buffer's work
        homes = plan.facilities["home_care_center"]
        unit_of = dict(zip(homes["id"].astype(str), homes["admin_code"].astype(str), strict=True))
        near = demand["nearest_home_care_center"].map(unit_of)
        crossing += int((near.notna() & (near != demand["partition"])).sum())
    assert crossing > 100


def test_a_buffer_narrower_than_the_reach_loses_facilities_across_borders(
    province: pv.ProvinceFile, reference: dict[str, object]
) -> None:
    plan = pv.plan_city(province, "220100", PARAMS, buffer_m=0.0)
    parts = [pv.run_partition(plan, unit, PARAMS) for unit in plan.specs]
    demand = pv.stitch_demand(plan.summary, parts)
    single = reference["220100"].result.demand  # type: ignore[attr-defined]
    worse = demand["time_min_any_eldercare"].to_numpy() > single["time_min_any_eldercare"]
    assert worse.sum() > 50
    # with the reach bound the buffer is wide: 15 min x 0.91 m/s = 819 m (+1 m margin)
    assert pv.plan_city(province, "220100", PARAMS).summary.reach_m == pytest.approx(820.0, 1e-6)


def _check_run(run: pv.ProvinceRun, province: pv.ProvinceFile, reference: dict) -> None:
    assert run.complete and not run.missing
    assert [c.code for c in run.cities] == list(reference)
    for code, ref in reference.items():
        assert_same_as_single(run.city_table(code), run.city_demand(code), ref)


def test_dask_run_equals_single_process_saves_and_resumes(
    province: pv.ProvinceFile, reference: dict, client: object, tmp_path: Path
) -> None:
    messages: list[str] = []
    run = pv.run_province(
        province,
        PARAMS,
        out=tmp_path,
        run_id="t_full",
        client=client,  # type: ignore[arg-type]
        progress=lambda f, m: messages.append(m),
    )
    _check_run(run, province, reference)
    assert len(run.partitions) == 15 and not run.partitions["resumed"].any()
    assert sum("分区 15/15" in m for m in messages) == 1
    assert set(run.worker_peak_mb) == set(client.scheduler_info()["workers"])  # type: ignore[attr-defined]
    # one GeoPackage per run: the stitched table, the units with their shares, every point
    gpkg = tmp_path / "province-t_full.gpkg"
    layers = set(pyogrio.list_layers(gpkg)[:, 0])
    assert {"coverage_table", "unit_coverage", "coverage_points", "gm_partitions"} <= layers
    points = pyogrio.read_dataframe(gpkg, layer="coverage_points")
    assert len(points) == len(run.demand) == sum(len(r.result.demand) for r in reference.values())
    saved = pyogrio.read_dataframe(gpkg, layer="coverage_table", read_geometry=False)
    assert saved["covered_aged_60_plus"].sum() == run.table["covered_aged_60_plus"].sum()
    # started again with the same run ID: nothing is redone, the results are the same
    again = pv.run_province(
        province, PARAMS, out=tmp_path, run_id="t_full", client=client, points=False
    )
    assert again.partitions["resumed"].all()
    _check_run(again, province, reference)
    with pytest.raises(ValueError, match="other parameters"):
        pv.run_province(
            province,
            pv.ProvinceParams(breaks_min=(10,)),
            out=tmp_path,
            run_id="t_full",
            client=client,
        )


def _kill_once(marker: str) -> object:
    def hook(city: str, unit: str, attempt: int) -> None:
        # the first partition to start kills its own worker process (as a crash would)
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL)
        except FileExistsError:
            return
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)

    return hook


def test_a_killed_worker_still_gives_the_complete_identical_result(
    province: pv.ProvinceFile, reference: dict, client: object, tmp_path: Path
) -> None:
    before = set(client.run(os.getpid).values())  # type: ignore[attr-defined]
    marker = tmp_path / "killed"
    run = pv.run_province(
        province,
        PARAMS,
        out=tmp_path,
        run_id="t_kill",
        client=client,  # type: ignore[arg-type]
        before_partition=_kill_once(str(marker)),  # type: ignore[arg-type]
        points=False,
    )
    assert marker.exists()
    _check_run(run, province, reference)
    client.wait_for_workers(2, timeout=60)  # type: ignore[attr-defined]
    after = set(client.run(os.getpid).values())  # type: ignore[attr-defined]
    assert len(after) == 2 and after != before  # the nanny started a new worker process


def _fail(counts: str, always: set[str]) -> object:
    def hook(city: str, unit: str, attempt: int) -> None:
        with open(counts, "a", encoding="utf-8") as fh:
            fh.write(f"{city}/{unit}/{attempt}\n")
        if f"{city}/{unit}" in always or (unit == "220104" and attempt == 0):
            msg = f"injected failure in {city}/{unit}"
            raise RuntimeError(msg)

    return hook


def test_failed_partitions_are_retried_reported_and_resumed(
    province: pv.ProvinceFile, reference: dict, client: object, tmp_path: Path
) -> None:
    counts = tmp_path / "calls.txt"
    p = pv.ProvinceParams(retries=1)
    run = pv.run_province(
        province,
        p,
        out=tmp_path,
        run_id="t_fail",
        client=client,  # type: ignore[arg-type]
        before_partition=_fail(str(counts), {"990100/990101"}),  # type: ignore[arg-type]
        points=False,
    )
    # 220104 failed once and was retried; 990101 failed both tries
    assert not run.complete and run.missing == ["990100/990101"]
    tries = [(f["city"], f["unit"], f["attempt"]) for f in run.failures]
    assert sorted(tries) == [
        ("220100", "220104", 0),
        ("990100", "990101", 0),
        ("990100", "990101", 1),
    ]
    assert all("injected failure" in f["error"] for f in run.failures)
    assert run.partitions.set_index("unit").loc["220104", "attempt"] == 1
    with pytest.raises(PartitionError, match="990100/990101"):
        pv.check_complete(run)
    # the complete cities are there already; the city with the lost partition is not
    assert set(run.table["city"]) == set(reference) - {"990100"}
    # resumed: only the lost partition runs again
    counts.unlink()
    again = pv.run_province(
        province,
        p,
        out=tmp_path,
        run_id="t_fail",
        client=client,  # type: ignore[arg-type]
        before_partition=_fail(str(counts), set()),  # type: ignore[arg-type]
        points=False,
    )
    assert counts.read_text().split() == ["990100/990101/0"]
    _check_run(again, province, reference)
    assert int((~again.partitions["resumed"]).sum()) == 1


def test_cli_province_mode_prints_progress_and_writes_the_run(
    province: pv.ProvinceFile, reference: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from geo_minzheng import cli

    args = ["coverage", "--province", str(province.path), "--out", str(tmp_path)]
    assert cli.main([*args, "--workers", "0"]) == cli.EXIT_USAGE
    assert cli.main([*args, "--run-id", "Bad-Id"]) == cli.EXIT_USAGE
    capsys.readouterr()
    assert cli.main([*args, "--workers", "2", "--run-id", "cli1"]) == cli.EXIT_OK
    out, err = capsys.readouterr()
    assert "5 个城市、15 个分区" in out and "峰值内存" in out
    assert "分区 15/15 完成" in err and "Dask" in err  # the progress bar, on stderr
    assert (tmp_path / "province-cli1.gpkg").is_file()
    table = pd.read_csv(tmp_path / "province_table.csv", dtype={"city": str, "unit": str})
    for code, ref in reference.items():
        mine = table[table["city"] == code]
        single = ref.result.table
        assert mine["covered_aged_60_plus"].tolist() == single["covered_aged_60_plus"].tolist()
    units = pd.read_csv(tmp_path / "province_units.csv")
    assert len(units) == 15


@pytest.mark.postgis
def test_results_go_to_postgis_one_table_per_run(
    province: pv.ProvinceFile, reference: dict, client: object, postgis_server: str
) -> None:
    import json

    import psycopg

    url = new_database(postgis_server)
    run = pv.run_province(province, PARAMS, out=url, run_id="pg1", client=client)  # type: ignore[arg-type]
    _check_run(run, province, reference)
    with psycopg.connect(url) as conn:
        n = conn.execute("SELECT count(*) FROM province_pg1").fetchone()[0]
        comment = conn.execute("SELECT obj_description('province_pg1'::regclass)").fetchone()[0]
        stored = conn.execute("SELECT parameters FROM gm_run WHERE run_id = 'pg1'").fetchone()[0]
        srid = conn.execute("SELECT DISTINCT ST_SRID(geom) FROM province_pg1").fetchall()
        covered = conn.execute(
            "SELECT sum(covered_aged_60_plus) FROM province_pg1_table"
        ).fetchone()[0]
    assert n == len(run.demand) and srid == [(4326,)]
    assert json.loads(comment)["breaks_min"] == [5.0, 10.0, 15.0]
    assert json.loads(stored) == PARAMS.as_dict()
    assert int(covered) == int(run.table["covered_aged_60_plus"].sum())
    again = pv.run_province(province, PARAMS, out=url, run_id="pg1", client=client, points=False)  # type: ignore[arg-type]
    assert again.partitions["resumed"].all()
    _check_run(again, province, reference)
