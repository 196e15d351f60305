# ruff: noqa: F811 - pytest fixtures imported from tests.test_api_support
"""Property-based requests generated from the API's own OpenAPI schema (schemathesis): whatever
the parameters and bodies, the server never answers with a 5xx. Bounded to a few examples per
operation so the test takes seconds."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error

from tests.test_api_support import (  # noqa: F401 - fixtures
    EDITOR_KEY,
    LiveServer,
    city_dir,
    fresh_store,
    make_settings,
    seed_store,
)


@pytest.fixture(scope="module")
def live_url(
    city_dir: Path, seed_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    from api.app import create_app

    store = fresh_store(seed_store, tmp_path_factory.mktemp("schema"))
    app = create_app(make_settings(city_dir, store, build_network_on_start=True, job_workers=1))
    with LiveServer(app) as server:
        yield server.url


def _operations(url: str) -> list:
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


def test_no_server_errors(live_url: str) -> None:
    """Every operation, a few generated requests each (with an editor key): never a 5xx.

    The operations are driven one by one with Hypothesis (``schemathesis.pytest`` does not
    support the installed pytest), which keeps every failure's request in the report.
    """
    operations = _operations(live_url)
    paths = {op.path for op in operations}
    assert {"/collections/{collection_id}/items", "/analysis/isochrone", "/jobs/{job_id}"} <= paths
    statuses: list[int] = []
    modes = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
    for operation, mode in itertools.product(operations, modes):

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck),
                  database=None)  # fmt: skip
        def check(case) -> None:
            response = case.call_and_validate(
                base_url=live_url,
                headers={"X-API-Key": EDITOR_KEY},
                checks=[not_a_server_error],
                timeout=60,
            )
            statuses.append(response.status_code)

        try:
            check()
        except Unsatisfiable:
            # an operation without parameters or body has no invalid request to generate
            assert mode is schemathesis.GenerationMode.NEGATIVE
    assert len(statuses) >= 6 * len(operations)  # the requests really went out
    assert max(statuses) < 500 and {200, 400, 404, 422} <= set(statuses)
