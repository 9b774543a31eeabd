"""The monitoring reports render in a real browser: headless Chromium follows the index's links.

Evidently 0.7 draws its charts client-side (plotly, and canvas sparklines in the drift table),
so a report file that exists is not yet a report a person can read. This test serves a reports
folder over HTTP on 127.0.0.1, opens ``index.html`` in Debian's Chromium (driven by Selenium
through Debian's chromedriver), clicks each report's link, waits until a chart has drawn and
takes a screenshot. Set ``BLUEPRINT_SCREENSHOT_DIR`` to keep the screenshots.
"""

from __future__ import annotations

import json
import os
import shutil
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
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from orchestration.lib.monitoring import (
    INDEX_HTML,
    INDEX_TITLE,
    REPORT_KINDS,
    ReportEntry,
    data_drift_report,
    performance_report,
    prediction_drift_report,
    record_report,
    report_path,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
)
RENDER_TIMEOUT_SECONDS = 60
SCREENSHOT_DIR_ENV = "BLUEPRINT_SCREENSHOT_DIR"
DAY = date(2024, 5, 1)
FEATURES = ["amount", "nb_tx_1day", "avg_amount_7day", "risk_7day"]

# The charts a person sees: a plotly figure with at least one drawn trace, or a canvas chart
# (the drift table's distributions) with at least one painted pixel. Returned as elements.
RENDERED_CHARTS_JS = """
const plotly = [...document.querySelectorAll('.js-plotly-plot')].filter(plot => {
  const box = plot.getBoundingClientRect();
  return box.width > 0 && box.height > 0 && plot.querySelector('.main-svg .trace') !== null;
});
const canvases = [...document.querySelectorAll('canvas')].filter(canvas => {
  if (!canvas.width || !canvas.height) return false;
  const context = canvas.getContext('2d');
  if (context === null) return false;
  const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
  for (let alpha = 3; alpha < pixels.length; alpha += 4) if (pixels[alpha] !== 0) return true;
  return false;
});
return plotly.concat(canvases);
"""


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
            "fraud_probability": score,
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
            day, path, alert_threshold=0.3, max_rows=50_000, seed=0
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
    """Headless Chromium with a fresh profile; fails (not skips) when it is not installed."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not found: the browser tests need Debian's chromium and "
            "chromium-driver packages (`make browser` installs them)",
            pytrace=False,
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _requested_urls(driver: webdriver.Chrome) -> list[str]:
    """URLs the page requested since the last call (from Chromium's performance log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def _save_screenshot(driver: webdriver.Chrome, name: str, folder: Path) -> Path:
    path = folder / f"{name}.png"
    assert driver.save_screenshot(str(path)), f"Chromium took no screenshot of {name}"
    keep = os.environ.get(SCREENSHOT_DIR_ENV)
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, Path(keep) / path.name)
    return path


def _assert_real_picture(path: Path) -> None:
    """A screenshot of a drawn page: full window size, many colours, not a blank PNG."""
    assert path.stat().st_size > 20_000, f"{path.name} is only {path.stat().st_size} bytes"
    with Image.open(path) as image:
        assert image.width >= 1_000 and image.height >= 700, image.size
        colours = image.convert("RGB").getcolors(maxcolors=1_000_000)
        assert colours is not None and len(colours) > 100, f"{path.name} looks blank"


def test_every_report_linked_from_the_index_renders_its_charts(chromium, served, tmp_path):
    base_url, reports_dir = served
    index_url = f"{base_url}/{INDEX_HTML}"
    shots = tmp_path / "screenshots"
    shots.mkdir()
    wait = WebDriverWait(chromium, RENDER_TIMEOUT_SECONDS, poll_frequency=0.25)

    chromium.get(index_url)
    assert chromium.title == INDEX_TITLE
    links = chromium.find_elements(By.CSS_SELECTOR, "a.report")
    assert sorted(link.get_attribute("data-kind") for link in links) == sorted(REPORT_KINDS)
    _assert_real_picture(_save_screenshot(chromium, "index", shots))
    assert chromium.execute_script(RENDERED_CHARTS_JS) == []  # the detector needs a chart

    for kind in REPORT_KINDS:
        chromium.get(index_url)
        link = chromium.find_element(By.CSS_SELECTOR, f'a.report[data-kind="{kind}"]')
        target = link.get_attribute("href")
        assert (
            urlsplit(target).path
            == "/" + report_path(reports_dir, DAY, kind).relative_to(reports_dir).as_posix()
        )
        _requested_urls(chromium)  # forget the index page's requests
        link.click()
        wait.until(lambda driver, target=target: driver.current_url == target)
        charts = wait.until(
            lambda driver: driver.execute_script(RENDERED_CHARTS_JS) or False,
            message=f"no chart of the {kind} report rendered within {RENDER_TIMEOUT_SECONDS} s",
        )
        chromium.execute_script("arguments[0].scrollIntoView({block: 'center'});", charts[0])
        _assert_real_picture(_save_screenshot(chromium, kind, shots))

        # the report is self-contained: nothing but the served file (and inline data) loaded
        foreign = [
            url
            for url in _requested_urls(chromium)
            if urlsplit(url).scheme not in ("data", "blob", "about")
            and not url.startswith(base_url + "/")
        ]
        assert foreign == [], f"the {kind} report requested {foreign}"
