"""Headless Chromium for the UI tests (Debian's chromium and chromedriver; `make browser` installs
them), driven by Selenium: the MLflow UI on the production stack, the API's rollout dashboard."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# screenshots every run leaves behind for a look (CI keeps them); not committed
ARTIFACTS_DIR = Path(os.environ.get("DREAMOPS_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))


def chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
    if not (chromium.exists() and chromedriver.exists()):
        pytest.fail("Chromium is missing: `make test` installs Debian's chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1000"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(str(chromedriver)), options=options)
