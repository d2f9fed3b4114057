"""Schema-driven fuzzing (issue 17): schemathesis generates requests for every operation of the live
app's own OpenAPI schema -- valid ones and ones that break it -- and sends them over real HTTP to the
fast tier's server on real Redis. Every answer must be a documented status below 500 (a clear 4xx
with a message for bad input), and the server must stay up."""

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.service.test_fuzz import OK

EXAMPLES = 40  # per operation and generation mode


@pytest.fixture(scope="module")
def operations(tiny_server):
    schema = schemathesis.openapi.from_url(f"{tiny_server.url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


def test_every_operation_of_the_schema_answers_below_500_with_a_message(tiny_server, operations):
    tried: dict[str, int] = {}
    allowed = OK | {201, 202, 204, 403, 405}
    for operation, mode in ((op, mode) for op in operations for mode in GenerationMode):
        key = f"{operation.method.upper()} {operation.path} ({mode.value})"

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        @given(case=operation.as_strategy(mode))
        def fuzz(case):
            response = case.call(base_url=tiny_server.url, timeout=30)
            tried[key] = tried.get(key, 0) + 1
            assert response.status_code in allowed, (key, response.status_code, response.text[:300])
            if response.status_code >= 400:
                assert response.json()["detail"], (key, response.text[:300])

        try:
            fuzz()
        except Unsatisfiable:  # nothing in the operation can break the schema (no parameters, no body)
            assert mode is GenerationMode.NEGATIVE, key
    print(f"schema fuzz: {sum(tried.values())} requests over {len(tried)} operations: {tried}")
    assert len({k.rsplit(" (", 1)[0] for k in tried}) == len(operations) >= 8
    # every route that reads a body documents it (POST /v1/items:batch read its body undocumented, so
    # it got one empty example), and every operation that takes input got more than one example
    for op in operations:
        if op.method == "post" and op.path not in (
            "/v1/admin/reload",
            "/v1/admin/promote",  # no body
            "/v1/items/{item_id}/restore",
            "/v1/bundles/{bundle_id}/restore",
        ):
            assert len(op.body), f"{op.path}: request body not in the schema"
        if len(op.body) or len(op.path_parameters) or len(op.query):
            assert tried[f"{op.method.upper()} {op.path} (positive)"] > 1, op.path
    assert httpx.get(f"{tiny_server.url}/healthz", timeout=10).status_code == 200
