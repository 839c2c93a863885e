"""The dashboard in a real headless Chromium (Selenium with Debian's chromedriver): a fresh
browser per test, waits that survive a page redrawing, reads done in one script, screenshots.

DASHBOARD_SCREENSHOTS=DIR (`make screenshot`) has the tests that take the pictures in docs/
write them to DIR as well."""

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.wait import WebDriverWait

from tests.support.server import Server

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="Debian's chromium and chromium-driver are not installed (.ci/run installs them)",
)
PARAMETERS = ("w11", "w12", "b11", "b12", "w21", "w22", "b2")
ENDED = ("succeeded", "failed", "cancelled")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    """A fresh headless Chromium (nothing in its session storage) with a 1200 x 800 viewport."""
    assert CHROMIUM is not None and CHROMEDRIVER is not None
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"):
        options.add_argument(arg)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    driver = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=options)
    viewport(driver, 800)
    yield driver
    driver.quit()


def viewport(driver: WebDriver, height: int) -> None:
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": 1200, "height": height, "deviceScaleFactor": 1, "mobile": False}
    )


def until(driver: WebDriver, condition: Callable[[WebDriver], Any], timeout: float = 30) -> Any:
    """What condition returns once it is truthy; a page redrawn meanwhile is asked again."""
    wait = WebDriverWait(driver, timeout, poll_frequency=0.05, ignored_exceptions=[StaleElementReferenceException])
    return wait.until(condition)


def sign_in(driver: WebDriver, server: Server, key: str, fragment: str = "") -> None:
    driver.get(f"{server.url}/ui/{fragment}")
    field = until(driver, lambda d: d.find_element(By.ID, "key"))
    field.send_keys(key, Keys.ENTER)


# Read in one script each: the page redraws while it trains, so an element found by one command
# may be gone by the next.
def text(driver: WebDriver, css: str) -> str:
    """The rendered text of the first element css selects, "" if none."""
    found: str = driver.execute_script("return document.querySelector(arguments[0])?.innerText ?? ''", css)
    return found


def attribute(driver: WebDriver, css: str, name: str) -> str | None:
    found: str | None = driver.execute_script(
        "return document.querySelector(arguments[0])?.getAttribute(arguments[1]) ?? null", css, name
    )
    return found


def number(cell: str) -> float:
    return float(cell.replace(",", ""))


def screenshot(driver: WebDriver, path: Path, full_height: bool = False, docs_name: str | None = None) -> None:
    """A PNG of the viewport (or of the whole page's height), in 256 colours: a quarter of the
    bytes; with docs_name, also DASHBOARD_SCREENSHOTS/docs_name when that is set."""
    if full_height:
        viewport(driver, max(800, driver.execute_script("return document.documentElement.scrollHeight")))
    driver.save_screenshot(str(path))
    Image.open(path).convert("RGB").quantize(256).save(path, optimize=True)
    if docs_name and (docs := os.environ.get("DASHBOARD_SCREENSHOTS")):
        shutil.copyfile(path, Path(docs) / docs_name)
