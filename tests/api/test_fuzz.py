"""Schemathesis over every route of the API, on both stores (SQLite, the default, and PostgreSQL), with
a token and without one: 0 server errors, and every answer is one the OpenAPI document lists, with
the documented body and content type.

Bounded for the suite's budget: DREAMOPS_FUZZ_EXAMPLES cases (default 30) per operation, caller and
mode (valid and invalid data), no shrinking, derandomized (the same cases every run)."""
from __future__ import annotations

import json
import os
import time
import uuid
from collections import Counter

import pytest

from tests.api.conftest import WEBHOOK_SECRET, configure_api
from tests.registry.conftest import MODEL, add_version

pytestmark = pytest.mark.e2e  # ~15-20 s per store here: ~1,500 requests through the whole stack
EXAMPLES = int(os.environ.get("DREAMOPS_FUZZ_EXAMPLES", "30"))


@pytest.fixture
def fuzz_app(prefect_server, api_db, dreamops_home, monkeypatch):
    """The app and its tokens, with the train deployment known to Prefect (not served: a triggered run
    stays scheduled), so a valid trigger is a 202, not the 503 of an unreachable Prefect."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.settings import PREFECT_API_URL
    from schemathesis.python import asgi

    from dreamops.api.main import create_app
    from dreamops.api.training import DEPLOYMENT

    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())  # the app runs in schemathesis' own thread
    flow_name, name = DEPLOYMENT.split("/")
    with get_client(sync_client=True) as client:
        deployment_id = client.create_deployment(flow_id=client.create_flow_from_name(flow_name), name=name)
    tokens = configure_api(api_db, monkeypatch)
    app = create_app()
    yield app, tokens
    asgi.shutdown_lifespans()  # schemathesis keeps the app's lifespan (ticker, reconciler) running until then
    # the session's Prefect server is shared: a later test's worker must not pick up the fuzzed runs
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))
        for run in runs:
            client.delete_flow_run(run.id)
        client.delete_deployment(deployment_id)


def _signed(case) -> dict:
    """Sign the webhook body as MLflow would, so the fuzzed events get past the signature."""
    from dreamops.registry.webhooks import sign

    if not isinstance(case.body, bytes):
        try:
            case.body = json.dumps(case.body, allow_nan=False).encode()
        except (TypeError, ValueError):  # not JSON (e.g. NOT_SET): sent as it is, refused unsigned
            return {}
    delivery, ts = str(uuid.uuid4()), str(int(time.time()))
    return {"X-MLflow-Delivery-Id": delivery, "X-MLflow-Timestamp": ts,
            "X-MLflow-Signature": sign(WEBHOOK_SECRET, delivery, ts, case.body.decode("utf-8", "replace"))}


def test_every_route_under_schemathesis_gives_no_server_error(fuzz_app, api_db):
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.checks import not_a_server_error
    from schemathesis.core.failures import FailureGroup
    from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                                   status_code_conformance)

    from dreamops.api.deps import promotions

    app, tokens = fuzz_app
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)  # starts the lifespan (migrations)
    v1, v2 = add_version(), add_version()
    promotions().promote(MODEL, v1, "production")
    operations = [result.ok() for result in schema.get_all_operations()]
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    statuses: Counter = Counter()
    failures: dict[tuple, str] = {}  # (operation, caller, mode, failure kinds) -> the first case's report
    unsatisfiable: list[str] = []
    started = time.perf_counter()
    for op in operations:
        for caller in ("engineer", None):
            headers = {"Authorization": f"Bearer {tokens[caller]}"} if caller else {}
            for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

                @given(case=op.as_strategy(mode, headers=headers or None))
                @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                          phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as found
                          suppress_health_check=list(HealthCheck))
                def one(case):
                    extra = _signed(case) if caller and op.path.endswith("/webhooks/mlflow") else {}
                    try:
                        response = case.call(headers={**headers, **extra})
                    except Exception as exc:  # the app raised instead of answering: a 500 to a client
                        statuses[500] += 1
                        failures.setdefault((op.label, caller, mode.value, "raised"), f"{exc!r:.3000}")
                        return
                    statuses[response.status_code] += 1
                    try:
                        case.validate_response(response, checks=checks)
                    except FailureGroup as exc:
                        kinds = ",".join(sorted(f.title for f in exc.exceptions))
                        failures.setdefault((op.label, caller, mode.value, kinds), str(exc))

                try:
                    one()
                except Unsatisfiable:  # nothing to make invalid (no parameters, e.g. /healthz)
                    assert mode == schemathesis.GenerationMode.NEGATIVE, op.label
                    unsatisfiable.append(op.label)
    elapsed = time.perf_counter() - started
    cases = sum(statuses.values())
    server_errors = sum(n for s, n in statuses.items() if s >= 500 and s != 503)
    print(f"\nfuzz on {api_db.split(':')[0]}: {len(operations)} operations, {cases} cases in {elapsed:.1f} s, "
          f"server errors {server_errors}, statuses {dict(sorted(statuses.items()))}, no invalid input for {unsatisfiable}")
    assert len(operations) >= 13  # every route of the JSON API, /healthz included
    assert not failures, "\n".join(map(str, failures)) + "\n\n" + "\n\n".join(list(failures.values())[:5])
    assert server_errors == 0
    assert cases >= len(operations) * 4  # each operation answered, both callers and modes
