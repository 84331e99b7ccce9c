"""The smoke pipeline against the production parts (mlflow server + PostgreSQL + S3), configured by
settings only; the version loads back from S3; MLflow delivers signed webhooks to the dreamops API,
which applies the promotion rules; the MLflow UI in headless Chromium shows the model's aliases."""
from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.error
import urllib.request
import uuid

import mlflow
import numpy as np
import pytest
import sqlalchemy as sa

from dreamops.flows.cli import main
from dreamops.registry.semver import is_semver
from dreamops.registry.webhooks import sign
from tests.browser import ARTIFACTS_DIR, chromium
from tests.stack import BUCKET, WEBHOOK_SECRET

pytestmark = pytest.mark.e2e
MODEL = "carracing-vmc"


@pytest.fixture(scope="module")
def trained(prefect_server, stack, tmp_path_factory):
    """One smoke run registered on the stack (with the webhook registered first, as in production)."""
    from dreamops.settings import get_settings

    home = tmp_path_factory.mktemp("stack-client") / ".dreamops"
    saved = dict(os.environ)
    os.environ.update({**stack.env, "DREAMOPS_HOME": str(home), "DREAMOPS_WORKERS": "2"})
    get_settings.cache_clear()
    try:
        assert main(["webhook", "--url", f"{stack.api_url}/api/v1/webhooks/mlflow"]) == 0
        assert main(["train", "--profile", "smoke", "--no-progress"]) == 0
        from dreamops.registry import store

        store.configure(get_settings())
        yield str(store.get_version(MODEL, "latest").version)  # other modules may have registered before
    finally:
        os.environ.clear()
        os.environ.update(saved)
        get_settings.cache_clear()
        mlflow.set_tracking_uri(None)


def test_smoke_pipeline_registers_on_the_stack_and_loads_back_from_s3(trained, on_stack, tmp_path, capsys):
    from dreamops.registry import store
    from dreamops.settings import get_settings
    from dreamops.storage import open_store
    from dreamops.tasks.dataset import fetch, open_dataset

    client = store.configure(get_settings())
    assert get_settings().mlflow_tracking_uri.startswith("http://127.0.0.1")
    v = trained
    mv = client.get_model_version(MODEL, v)
    assert is_semver(mv.tags["semver"]) and mv.tags["validation_status"] == "passed"
    assert str(client.get_model_version_by_alias(MODEL, "staging").version) == v

    # the artifacts are objects in the S3 bucket, written by the MLflow server through boto3
    model_id = mv.source.removeprefix("models:/")
    bundle_keys = [k for k in on_stack.s3_keys("mlflow/") if k.endswith("artifacts/vmc_bundle.pt") and model_id in k]
    assert len(bundle_keys) == 1
    s3_bytes = on_stack.s3().get_object(Bucket=BUCKET, Key=bundle_keys[0])["Body"].read()
    loaded = store.load_bundle(MODEL, v)  # through the server's artifact proxy, hashes checked
    assert hashlib.sha256(loaded.path.read_bytes()).hexdigest() == hashlib.sha256(s3_bytes).hexdigest()

    model = mlflow.pyfunc.load_model(f"models:/{MODEL}/{v}")
    frames = np.random.default_rng(0).integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
    actions = model.predict(frames, params={"reset": True})
    assert actions.shape == (3, 3) and np.isfinite(actions).all()

    # the dataset went to S3 through the storage interface; an empty machine fetches it by hash
    data_hash = mv.tags["data_hash"]
    assert mv.tags["data_uri"] == f"s3://{BUCKET}/store/datasets/{data_hash[:16]}"
    assert f"store/datasets/{data_hash[:16]}/dataset.json" in on_stack.s3_keys("store/datasets/")
    path = fetch(open_store(get_settings()), tmp_path / "empty-cache", data_hash[:12])
    assert open_dataset(tmp_path / "empty-cache", str(path)).hash == data_hash

    # the audit log is in PostgreSQL and the CLI reads it
    with sa.create_engine(on_stack.env["DREAMOPS_DATABASE_URL"]).connect() as conn:
        rows = conn.execute(sa.text("select alias, to_version, source from dreamops_alias_moves")).all()
    assert ("staging", v, "flow") in [tuple(r) for r in rows]
    assert main(["lineage", v]) == 0
    out = capsys.readouterr().out
    assert f"data {data_hash}  at s3://{BUCKET}/store/datasets/" in out and "weights vae" in out


def _wait_for(predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_mlflow_webhooks_reach_the_api_and_apply_the_rules(trained, on_stack):
    from dreamops.registry import store
    from dreamops.registry.audit import AuditLog
    from dreamops.settings import get_settings

    client = store.configure(get_settings())
    audit = AuditLog(get_settings().sql_url)

    # an engineer promotes v1 in the MLflow UI (the UI calls this same REST endpoint)
    v = trained
    client.set_registered_model_alias(MODEL, "production", v)
    accepted = _wait_for(lambda: [m for m in audit.history(MODEL, "production") if m.source == "webhook"],
                         what="the webhook to record the UI promotion")
    assert accepted[0].to_version == v and accepted[0].outcome == "applied"

    # ... then points production at a version that failed its gates: the API reverts it
    bad = _failed_version(client, v)
    client.set_registered_model_alias(MODEL, "production", bad)
    reverted = _wait_for(lambda: [m for m in audit.history(MODEL, "production") if m.outcome == "reverted"],
                         what="the webhook to revert the failed version")
    assert reverted[0].from_version == bad and reverted[0].to_version == v
    assert str(client.get_model_version_by_alias(MODEL, "production").version) == v


def _post(url: str, body: bytes, headers: dict) -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as err:
        return err.code


def test_api_rejects_forged_stale_and_replayed_deliveries(stack):
    url = f"{stack.api_url}/api/v1/webhooks/mlflow"
    body = json.dumps({"entity": "model_version", "action": "created", "data": {"name": MODEL, "version": "1"}})

    def headers(secret=WEBHOOK_SECRET, ts=None, delivery_id=None):
        delivery_id, ts = delivery_id or str(uuid.uuid4()), str(int(ts or time.time()))
        return {"X-MLflow-Delivery-Id": delivery_id, "X-MLflow-Timestamp": ts,
                "X-MLflow-Signature": sign(secret, delivery_id, ts, body)}

    good = headers()
    assert _post(url, body.encode(), good) == 200
    assert _post(url, body.encode(), good) == 409  # replay
    assert _post(url, body.encode(), headers(secret="wrong")) == 401
    assert _post(url, body.encode(), headers(ts=time.time() - 3600)) == 401  # stale


def _failed_version(client, like: str) -> str:
    """A version that did not pass its gates (same weights as version `like`; only its tags differ)."""
    v1 = client.get_model_version(MODEL, like)
    return str(client.create_model_version(MODEL, source=v1.source, run_id=v1.run_id,
                                           model_id=v1.source.removeprefix("models:/"),
                                           tags={"validation_status": "failed",
                                                 "gate.vae_recon": "failed: 0.3 >= 0.02"}).version)


def _add_alias_in_ui(driver, base: str, version: str, alias: str) -> None:
    """What an engineer does: open the version, edit its aliases, type one, save."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{base}/#/models/{MODEL}/versions/{version}")
    wait = WebDriverWait(driver, 90)
    # the aliases editor opens from "Add" (no alias yet) or the pencil beside the aliases
    def open_editor(d) -> bool:
        # the page re-renders while it loads: find and click again if the button went stale
        try:
            buttons = d.find_elements(By.CSS_SELECTOR, 'button[data-component-id*="aliaseditor"]') or \
                [b for b in d.find_elements(By.CSS_SELECTOR, "button")
                 if b.text == "Add" and "btn-link" in (b.get_attribute("class") or "")]
            if buttons:
                buttons[0].click()
                return True
        except StaleElementReferenceException:
            pass
        return False

    wait.until(open_editor)
    box = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "[role=dialog] input[role=combobox]"))
    box.send_keys(alias, Keys.ENTER)
    save = '[data-component-id="mlflow.edit-aliases-modal.save-button"]'
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, save).is_enabled())
    driver.find_element(By.CSS_SELECTOR, save).click()


def test_promotion_in_the_mlflow_ui_goes_through_the_rules(trained, on_stack):
    """Headless Chromium (Debian's package) driven by Selenium uses the UI that `mlflow server`
    serves: a passed version promoted there stays; a failed one is reverted by the API."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from dreamops.registry import store
    from dreamops.registry.audit import AuditLog
    from dreamops.settings import get_settings

    client = store.configure(get_settings())
    audit = AuditLog(get_settings().sql_url)
    v = trained
    failed = _failed_version(client, v)
    driver = chromium()
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    try:
        _add_alias_in_ui(driver, on_stack.tracking_uri, v, "canary")
        applied = _wait_for(lambda: [m for m in audit.history(MODEL, "canary") if m.source == "webhook"],
                            what="the UI's canary promotion to reach the audit log")
        assert (applied[0].to_version, applied[0].outcome) == (v, "applied")

        _add_alias_in_ui(driver, on_stack.tracking_uri, failed, "staging")
        reverted = _wait_for(lambda: [m for m in audit.history(MODEL, "staging") if m.outcome == "reverted"
                                      and m.from_version == failed], what="the failed version's revert")
        assert reverted[0].to_version == v
        assert str(client.get_model_version_by_alias(MODEL, "staging").version) == v

        driver.get(f"{on_stack.tracking_uri}/#/models/{MODEL}")
        body = lambda d: d.find_element(By.TAG_NAME, "body").text  # noqa: E731
        WebDriverWait(driver, 90).until(lambda d: f"Version {failed}" in body(d) and "canary" in body(d)
                                        and "staging" in body(d))
        assert MODEL in body(driver)
        driver.save_screenshot(str(ARTIFACTS_DIR / "mlflow-ui-model.png"))

        driver.get(f"{on_stack.tracking_uri}/#/models/{MODEL}/versions/{v}")
        WebDriverWait(driver, 90).until(lambda d: "validation_status" in body(d) and "canary" in body(d))
        assert "semver" in body(driver) and client.get_model_version(MODEL, v).tags["semver"] in body(driver)
        driver.save_screenshot(str(ARTIFACTS_DIR / "mlflow-ui-version.png"))
    finally:
        driver.quit()
    assert (ARTIFACTS_DIR / "mlflow-ui-model.png").stat().st_size > 10_000
