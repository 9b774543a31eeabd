"""The monitoring reports render in a real browser: headless Chromium follows the index's links.

Evidently 0.7 draws its charts client-side (plotly, and canvas sparklines in the drift table),
so a report file that exists is not yet a report a person can read. This test serves a reports
folder over HTTP on 127.0.0.1, opens ``index.html`` in Debian's Chromium (driven by Selenium
through Debian's chromedriver), clicks each report's link, waits until a chart has drawn and
takes a screenshot. Set ``BLUEPRINT_SCREENSHOT_DIR`` to keep the screenshots.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import date
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from orchestration.lib.monitoring.report_index import (
    INDEX_HTML,
    INDEX_TITLE,
    REPORT_KINDS,
    ReportEntry,
    record_report,
    report_path,
)
from orchestration.lib.monitoring.reports import (
    data_drift_report,
    performance_report,
    prediction_drift_report,
)
from tests import browser
from tests.training.families import SCORECARD

DAY = date(2024, 5, 1)
FEATURES = ["amount", "nb_tx_1day", "avg_amount_7day", "risk_7day"]


def _build_reports(reports_dir: Path) -> None:
    """One report of each kind for DAY from seeded synthetic data, and the index page."""
    rng = np.random.default_rng(0)
    reference = pd.DataFrame(rng.normal(size=(2_000, len(FEATURES))), columns=FEATURES)
    current = pd.DataFrame(rng.normal(size=(2_000, len(FEATURES))), columns=FEATURES)
    current["amount"] += 0.7
    rows = 4_000
    label = (rng.random(rows) < 0.03).astype(int)
    score = np.clip(rng.beta(1, 20, rows) + 0.6 * label * rng.random(rows), 0.0, 1.0)
    day = pd.DataFrame(
        {
            "card_key": rng.integers(0, 1_000, rows),
            "score": score,
            "alert": score >= 0.3,
            "label": label,
        }
    )
    reference_scores = rng.beta(1, 20, 3_000)
    builders = {
        "data_drift": lambda path: data_drift_report(
            reference, current, FEATURES, path, max_rows=50_000, seed=0
        ),
        "prediction_drift": lambda path: prediction_drift_report(
            reference_scores, score, path, max_rows=50_000, seed=0
        ),
        "performance": lambda path: performance_report(
            day, path, alert_threshold=0.3, scorecard=SCORECARD, max_rows=50_000, seed=0
        ),
    }
    for kind in REPORT_KINDS:
        path = report_path(reports_dir, DAY, kind)
        numbers = builders[kind](path)
        record_report(
            reports_dir,
            ReportEntry(
                day=DAY,
                kind=kind,
                html=path.relative_to(reports_dir).as_posix(),
                numbers=numbers,
                created_at="2024-05-02T06:00:00+00:00",
            ),
        )


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Requests are not logged: the test asserts on what the browser did."""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The reports folder served over HTTP on a free port of 127.0.0.1: (base URL, folder)."""
    reports_dir = tmp_path / "reports"
    _build_reports(reports_dir)
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(_QuietHandler, directory=str(reports_dir))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", reports_dir
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    with browser.chromium(tmp_path / "chromium-profile") as driver:
        yield driver


def test_every_report_linked_from_the_index_renders_its_charts(chromium, served, tmp_path):
    base_url, reports_dir = served
    index_url = f"{base_url}/{INDEX_HTML}"
    shots = tmp_path / "screenshots"
    shots.mkdir()
    wait = WebDriverWait(chromium, browser.RENDER_TIMEOUT_SECONDS, poll_frequency=0.25)

    chromium.get(index_url)
    assert chromium.title == INDEX_TITLE
    links = chromium.find_elements(By.CSS_SELECTOR, "a.report")
    assert sorted(link.get_attribute("data-kind") for link in links) == sorted(REPORT_KINDS)
    browser.assert_real_picture(browser.save_screenshot(chromium, "index", shots))
    # the detector needs a chart: the index has none
    assert chromium.execute_script(browser.RENDERED_CHARTS_JS) == []

    for kind in REPORT_KINDS:
        chromium.get(index_url)
        link = chromium.find_element(By.CSS_SELECTOR, f'a.report[data-kind="{kind}"]')
        target = link.get_attribute("href")
        assert (
            urlsplit(target).path
            == "/" + report_path(reports_dir, DAY, kind).relative_to(reports_dir).as_posix()
        )
        browser.requested_urls(chromium)  # forget the index page's requests
        browser.click_link(chromium, link)
        wait.until(lambda driver, target=target: driver.current_url == target)
        charts = browser.wait_for_charts(chromium, f"the {kind} report")
        chromium.execute_script("arguments[0].scrollIntoView({block: 'center'});", charts[0])
        browser.assert_real_picture(browser.save_screenshot(chromium, kind, shots))

        # the report is self-contained: nothing but the served file (and inline data) loaded
        foreign = [
            url
            for url in browser.requested_urls(chromium)
            if urlsplit(url).scheme not in ("data", "blob", "about")
            and not url.startswith(base_url + "/")
        ]
        assert foreign == [], f"the {kind} report requested {foreign}"
