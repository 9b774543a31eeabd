"""A real browser for the UI tests (importable as ``tests.browser``).

Debian's Chromium, headless, driven by Selenium through Debian's chromedriver (`make browser`
installs both). Playwright's own browser download does not work on these machines.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from selenium.webdriver.support.ui import WebDriverWait

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

# The charts a person sees in an Evidently report: a plotly figure with at least one drawn
# trace, or a canvas chart (the drift table's distributions) with at least one painted pixel.
# Returned as elements.
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


@contextmanager
def chromium(profile_dir: Path) -> Iterator[webdriver.Chrome]:
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
    options.add_argument(f"--user-data-dir={profile_dir}")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def requested_urls(driver: webdriver.Chrome) -> list[str]:
    """URLs the page requested since the last call (from Chromium's performance log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def save_screenshot(driver: webdriver.Chrome, name: str, folder: Path) -> Path:
    """A screenshot of the window; also copied to ``$BLUEPRINT_SCREENSHOT_DIR`` when set."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    assert driver.save_screenshot(str(path)), f"Chromium took no screenshot of {name}"
    keep = os.environ.get(SCREENSHOT_DIR_ENV)
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, Path(keep) / path.name)
    return path


def assert_real_picture(path: Path) -> None:
    """A screenshot of a drawn page: full window size, many colours, not a blank PNG."""
    assert path.stat().st_size > 20_000, f"{path.name} is only {path.stat().st_size} bytes"
    with Image.open(path) as image:
        assert image.width >= 1_000 and image.height >= 700, image.size
        colours = image.convert("RGB").getcolors(maxcolors=1_000_000)
        assert colours is not None and len(colours) > 100, f"{path.name} looks blank"


def wait_for_charts(driver: webdriver.Chrome, what: str) -> list:
    """The drawn charts of the open page, once there is at least one (fails after a minute)."""
    return WebDriverWait(driver, RENDER_TIMEOUT_SECONDS, poll_frequency=0.25).until(
        lambda page: page.execute_script(RENDERED_CHARTS_JS) or False,
        message=f"no chart of {what} rendered within {RENDER_TIMEOUT_SECONDS} s",
    )


FIRST_LINE_CENTRE_JS = """
const rect = arguments[0].getClientRects()[0];
const x = Math.floor(rect.left + rect.width / 2), y = Math.floor(rect.top + rect.height / 2);
const top = document.elementFromPoint(x, y);
return [x, y, top !== null && (top === arguments[0] || arguments[0].contains(top))];
"""


def click_link(driver: webdriver.Chrome, link) -> None:
    """Click a link where a person would: on its text. A link wrapped over two lines (a long URL
    in a narrow cell) has the centre of its bounding box between the lines, on the cell, where
    chromedriver's own click lands; the centre of its first line is on the text."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", link)
    x, y, on_link = driver.execute_script(FIRST_LINE_CENTRE_JS, link)
    assert on_link, f"something covers the link {link.get_attribute('href')} at ({x}, {y})"
    actions = ActionBuilder(driver)
    actions.pointer_action.move_to_location(x, y).click()
    actions.perform()
