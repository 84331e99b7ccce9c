"""The rollout dashboard (/ui) in headless Chromium against the API served by uvicorn: a canary
advances on screen while robots report, a rollback clicked there takes effect, a viewer's click is
refused with the server's message. The page is one self-contained file (no CDN)."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.test_canary import arms, deploy, play_round, setup_production
from tests.api.test_fleet_live import live_api  # noqa: F401  (the fixture)
from tests.browser import ARTIFACTS_DIR, chromium
from tests.registry.conftest import alias

# The page reads the same JSON on either store; the stores themselves are tested in test_canary.py.
ON_SQLITE = pytest.mark.parametrize("api_db", ["sqlite"], indirect=True)
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "rollout-dashboard.png"
WAIT_S = 20  # the page polls every second


class Dashboard:
    """What an on-call engineer does on /ui: enter a token, read a deployment's card, click its buttons."""

    def __init__(self, driver, url: str):
        self.driver, self.url = driver, url

    def open(self, token: str) -> None:
        from selenium.webdriver.common.by import By

        self.driver.get(f"{self.url}/ui")
        self.driver.find_element(By.ID, "token").send_keys(token)
        self.driver.find_element(By.CSS_SELECTOR, "#token-form button[type=submit]").click()

    def field(self, deployment_id: str, name: str) -> str:
        from selenium.webdriver.common.by import By

        cards = self.driver.find_elements(By.CSS_SELECTOR, f'[data-deployment="{deployment_id}"]')
        return cards[0].find_element(By.CSS_SELECTOR, f'[data-field="{name}"]').text if cards else ""

    def wait(self, condition, what: str):
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, WAIT_S, poll_frequency=0.1).until(lambda _: condition(), message=what)

    def wait_field(self, deployment_id: str, name: str, expected: str) -> None:
        self.wait(lambda: self.field(deployment_id, name) == expected,
                  f"{name} to show {expected!r} (shows {self.field(deployment_id, name)!r})")

    def click(self, deployment_id: str, action: str, reason: str = "") -> None:
        """Click Promote stage or Roll back and confirm the browser's question."""
        from selenium.webdriver.common.by import By

        card = self.driver.find_element(By.CSS_SELECTOR, f'[data-deployment="{deployment_id}"]')
        if reason:
            card.find_element(By.CSS_SELECTOR, '[data-field="rollback-reason"]').send_keys(reason)
        card.find_element(By.CSS_SELECTOR, f'button[data-action="{action}"]').click()
        self.wait(lambda: _alert(self.driver), "the confirmation dialog").accept()


def _alert(driver):
    from selenium.common.exceptions import NoAlertPresentException

    try:
        return driver.switch_to.alert
    except NoAlertPresentException:
        return None


@pytest.fixture(scope="module")
def browser():
    driver = chromium()
    yield driver
    driver.quit()


@pytest.fixture
def dashboard(live_api, browser):  # noqa: F811  (live_api: the imported fixture)
    url, api = live_api
    return Dashboard(browser, url), api


def _shows_counts(page: Dashboard, deployment_id: str, statistics: dict, scopes=("stage", "total")) -> bool:
    episodes = statistics["episodes"]
    return all(page.field(deployment_id, f"{arm}-{scope}") == str(episodes[f"{arm}_{scope}"])
               for arm in ("canary", "baseline") for scope in scopes)


def _save_screenshot(driver) -> None:
    """Into test-artifacts/ on every run; into the docs only when asked (a run must not dirty the tree)."""
    from selenium.webdriver.common.by import By

    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    # the page, not the whole window
    driver.find_element(By.TAG_NAME, "body").screenshot(str(ARTIFACTS_DIR / SCREENSHOT.name))
    assert (ARTIFACTS_DIR / SCREENSHOT.name).stat().st_size > 10_000
    if os.environ.get("DREAMOPS_DOCS_SCREENSHOTS") == "1":
        shutil.copyfile(ARTIFACTS_DIR / SCREENSHOT.name, SCREENSHOT)


@ON_SQLITE
def test_a_canary_advances_on_screen_and_a_rollback_clicked_there_takes_effect(dashboard, registry):
    page, api = dashboard
    _, v2 = setup_production(registry)
    page.open(api.tokens["engineer"])
    arms(api)  # the 20 robots say hello first: from the start, 25% of them (5) are on the canary
    # two episodes each (rewards mean-20, mean+20: every round has the arm's mean) are 10 canary / 30
    # baseline episodes, short of 12 per arm; a second round passes the stage
    d = deploy(api, v2, rollout_percent=25, bake_seconds=0, min_episodes=12)
    dep = d["deployment_id"]
    page.wait_field(dep, "status", "rolling out")
    assert page.field(dep, "canary-total") == "0" and page.field(dep, "title") == f"carracing-vmc v{v2}"

    play_round(api, canary_reward=295.0, n=2)
    held = api.get(f"/deployments/{dep}").json()
    assert held["percent"] == 25 and held["statistics"]["last_verdict"] == "hold", held["statistics"]
    page.wait(lambda: _shows_counts(page, dep, held["statistics"]), "the first round's episode counts")
    assert page.field(dep, "verdict").lower() == "hold" and "waiting for 12 episodes" in page.field(dep, "reason")
    assert page.field(dep, "p") == f"{held['statistics']['welch']['p_value']:.4f}"  # the test, as it accumulates

    play_round(api, canary_reward=295.0, n=2)  # the stage passes: 50% of the robots on the canary
    advanced = api.get(f"/deployments/{dep}").json()
    assert advanced["percent"] == 50, advanced["statistics"]
    # the totals only: the stage counts are the passed stage's in the judgment that advanced, and the
    # new stage's (none yet) from the next tick on, which may come before the page's next poll
    page.wait(lambda: _shows_counts(page, dep, advanced["statistics"], scopes=("total",)), "the second round's totals")
    assert page.field(dep, "stage").startswith("stage 2 of 3 · 50% of robots on the canary")
    assert int(page.field(dep, "canary-total")) > int(held["statistics"]["episodes"]["canary_total"])
    _save_screenshot(page.driver)

    page.click(dep, "rollback", reason="on-call: tickets from WH-042")
    page.wait_field(dep, "status", "rolled back")
    after = api.get(f"/deployments/{dep}").json()
    assert after["status"] == "rolled_back" and after["reason"] == "on-call: tickets from WH-042 (by test-engineer)"
    assert alias(registry[1], "canary") is None  # the assignments are back on the baseline
    assert page.field(dep, "reason").startswith(after["reason"])
    assert page.field(dep, "message") == "rollback done: rolled back at 50%"


@ON_SQLITE
def test_a_viewer_sees_the_rollout_but_its_clicks_are_refused_with_the_servers_message(dashboard, registry):
    page, api = dashboard
    _, v2 = setup_production(registry)
    dep = deploy(api, v2, rollout_percent=25, bake_seconds=0)["deployment_id"]
    refusal = api.post(f"/deployments/{dep}/promote", role="viewer")
    assert refusal.status_code == 403

    page.open(api.tokens["viewer"])
    page.wait_field(dep, "status", "rolling out")
    for action in ("promote", "rollback"):
        page.click(dep, action)
        page.wait_field(dep, "message", f"{action} refused (403): {refusal.json()['message']}")
    state = api.get(f"/deployments/{dep}").json()
    assert (state["status"], state["stage_index"]) == ("rolling_out", 0)


@ON_SQLITE
def test_a_bad_token_shows_the_servers_explanation(dashboard):
    page, _ = dashboard
    page.open("nope.nope")
    banner = lambda: page.driver.find_element("id", "banner").text  # noqa: E731
    page.wait(lambda: banner() == "401: invalid or revoked token", "the 401 message in the banner")


def test_the_dashboard_is_one_page_that_loads_nothing_from_elsewhere():
    from dreamops.api.main import create_app

    answer = TestClient(create_app()).get("/ui")  # no lifespan: the page needs no database
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert "connect-src 'self'" in answer.headers["content-security-policy"]
    assert re.findall(r"https?://|[\"'(]//", answer.text) == []  # no CDN, no other origin
    assert "/ui" not in create_app().openapi()["paths"]  # HTML, not part of the JSON API
