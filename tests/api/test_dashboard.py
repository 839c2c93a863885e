"""The dashboard at /ui/ in a real headless Chromium (Selenium with Debian's chromedriver) against a
real `tinytrain serve`: the pasted key and the lists, a job's loss curve drawing live and its fit,
a sweep's leaderboard, heatmap and best curves, and what a wrong key or another owner's id shows.

Each test saves screenshots in its tmp_path (tests/support/browser.py)."""

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from tests.support import browser as dashboard
from tests.support.browser import ENDED, PARAMETERS, attribute, needs_chromium, number, screenshot, sign_in, text, until
from tests.support.client import wait_for
from tests.support.data import sine_points
from tests.support.ports import free_port
from tests.support.server import Server

pytestmark = needs_chromium
browser = dashboard.browser  # the fixture (tests/conftest.py has server)
# 2,000 points one at a time for 60,000 epochs: a job that trains long enough to be watched live.
LONG = {"learning_rate": 0.002, "batch_size": 1, "epochs": 60_000}


def submit(client: httpx.Client, path: str, body: dict[str, Any]) -> str:
    r = client.post(path, json=body)
    assert r.status_code == 202, r.text
    run_id: str = r.json()["id"]
    return run_id


def wait_sweep(client: httpx.Client, sweep_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        sweep: dict[str, Any] = client.get(f"/v1/sweeps/{sweep_id}").json()
        if sweep["status"] in ENDED:
            return sweep
        assert time.monotonic() < deadline, sweep["status"]
        time.sleep(0.1)


def test_a_pasted_key_shows_the_jobs_and_sweeps_newest_first(
    server: Server, browser: WebDriver, tmp_path: Path
) -> None:
    with server.client() as c:
        body = {"dataset": sine_points(50), "hyperparameters": {"epochs": 20, "batch_size": 10}}
        jobs = [submit(c, "/v1/jobs", {**body, "name": f"listed {i}"}) for i in range(2)]
        sweep = submit(c, "/v1/sweeps", {**body, "grid": {"learning_rate": [0.1, 0.3]}})
        for job_id in jobs:
            wait_for(c, job_id, "succeeded")
        wait_sweep(c, sweep)

    sign_in(browser, server, server.key)
    rows = until(browser, lambda d: [r for r in d.find_elements(By.CSS_SELECTOR, "#jobs tr[data-id]") if r.text])
    ids = [r.get_attribute("data-id") for r in rows]
    assert ids[:2] == jobs[::-1]  # newest first
    until(browser, lambda d: "succeeded" in text(d, f'#jobs tr[data-id="{jobs[0]}"]'))
    assert "20 / 20" in text(browser, f'#jobs tr[data-id="{jobs[0]}"]')  # the epochs' progress
    until(browser, lambda d: "2 / 2" in text(d, f'#sweeps tr[data-id="{sweep}"]'))
    assert "succeeded" in text(browser, f'#sweeps tr[data-id="{sweep}"]')
    screenshot(browser, tmp_path / "lists.png")

    # The key is in the tab's session storage only: not in the address, not in a cookie.
    assert browser.execute_script("return sessionStorage.getItem('tinytrain.key')") == server.key
    assert server.key not in browser.current_url and browser.get_cookies() == []
    # A link opens with the keyboard; a reload of the page needs no key again.
    browser.find_element(By.CSS_SELECTOR, f'#jobs tr[data-id="{jobs[0]}"] a').send_keys(Keys.ENTER)
    until(browser, lambda d: d.current_url.endswith(f"#/jobs/{jobs[0]}"))
    browser.refresh()
    until(browser, lambda d: "listed 0" in text(d, "#view h1"))


def test_a_running_jobs_loss_curve_draws_live_then_its_parameters(
    server: Server, browser: WebDriver, tmp_path: Path
) -> None:
    """Needs GET /v1/jobs/{id}/events (the page reads the stream with fetch; without the route it
    polls, and data-source says which)."""
    with server.client() as c:
        job_id = submit(c, "/v1/jobs", {"dataset": sine_points(2000), "hyperparameters": LONG})
        sign_in(browser, server, server.key, f"#/jobs/{job_id}")
        until(browser, lambda d: int(attribute(d, "#loss-chart", "data-points") or 0) > 0)
        first = int(attribute(browser, "#loss-chart", "data-points") or 0)
        until(browser, lambda d: int(attribute(d, "#loss-chart", "data-points") or 0) > first)
        assert c.get(f"/v1/jobs/{job_id}").json()["status"] == "running"  # more points while it trains
        assert attribute(browser, "#loss-chart", "data-source") == "events"
        assert text(browser, "#view h1 .status") == "running"
        # No parameters until the end, unless progress events carry them (then they are live).
        live = attribute(browser, "#parameters tr", "data-live") is not None
        assert live or text(browser, '#parameters td[data-name="w11"]') == "—"
        until(browser, lambda d: int(attribute(d, "#loss-chart", "data-points") or 0) >= LONG["epochs"] // 4)
        screenshot(browser, tmp_path / "job-training.png")

        until(browser, lambda d: attribute(d, "#view", "data-finished") == "true", timeout=240)
        job = c.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded"
    assert text(browser, "#view h1 .status") == "succeeded"
    assert int(attribute(browser, "#loss-chart", "data-points") or 0) == LONG["epochs"]  # every epoch, once
    for name in PARAMETERS:
        shown = number(text(browser, f'#parameters td[data-name="{name}"]'))
        assert shown == pytest.approx(job["result"]["parameters"][name], rel=1e-3, abs=1e-3), name
    until(browser, lambda d: attribute(d, "#fit-chart", "data-curve") == "drawn")
    assert attribute(browser, "#fit-chart", "data-points") == "2000"
    screenshot(browser, tmp_path / "job-finished.png")


def test_a_finished_job_shows_its_curves_parameters_and_fit(server: Server, browser: WebDriver, tmp_path: Path) -> None:
    hyperparameters = {"learning_rate": 0.3, "batch_size": 16, "epochs": 1500, "validation_fraction": 0.2}
    with server.client() as c:
        job_id = submit(c, "/v1/jobs", {"dataset": sine_points(600), "hyperparameters": hyperparameters})
        job = wait_for(c, job_id, "succeeded")

    sign_in(browser, server, server.key, f"#/jobs/{job_id}")
    until(browser, lambda d: attribute(d, "#view", "data-finished") == "true")
    until(browser, lambda d: attribute(d, "#loss-chart", "data-points") == "1500")
    assert attribute(browser, "#loss-chart", "data-source") == "result"
    legend = until(browser, lambda d: text(d, "#loss-chart .u-legend"))
    assert "training loss" in legend and "validation loss" in legend
    for name in PARAMETERS:
        shown = number(text(browser, f'#parameters td[data-name="{name}"]'))
        assert shown == pytest.approx(job["result"]["parameters"][name], rel=1e-3, abs=1e-3), name
    until(browser, lambda d: attribute(d, "#fit-chart", "data-curve") == "drawn")
    assert attribute(browser, "#fit-chart", "data-points") == "600"
    assert not browser.find_element(By.ID, "download-plot").get_attribute("disabled")

    # The log-scale toggle works from the keyboard and redraws the axis.
    assert attribute(browser, "#loss-chart", "data-scale") == "log"
    toggle = browser.find_element(By.ID, "log-scale")
    toggle.send_keys(Keys.SPACE)
    until(browser, lambda d: attribute(d, "#loss-chart", "data-scale") == "linear")
    assert browser.find_elements(By.CSS_SELECTOR, "#loss-chart canvas")
    screenshot(browser, tmp_path / "job-linear.png")
    toggle.send_keys(Keys.SPACE)
    until(browser, lambda d: attribute(d, "#loss-chart", "data-scale") == "log")
    screenshot(browser, tmp_path / "job.png")


def test_a_sweep_page_shows_the_leaderboard_heatmap_and_best_curves(
    server: Server, browser: WebDriver, tmp_path: Path
) -> None:
    grid = {"learning_rate": [0.03, 0.1, 0.3], "batch_size": [1, 4, 16]}
    with server.client() as c:
        body = {"dataset": sine_points(200), "hyperparameters": {"epochs": 150}, "grid": grid}
        sweep_id = submit(c, "/v1/sweeps", body)
        sweep = wait_sweep(c, sweep_id)
        best = c.get(f"/v1/sweeps/{sweep_id}/trials", params={"order_by": "objective", "limit": 5}).json()["items"]
    assert sweep["status"] == "succeeded"

    sign_in(browser, server, server.key, f"#/sweeps/{sweep_id}")
    until(browser, lambda d: attribute(d, "#view", "data-loaded") == "true")
    cells = until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "svg#heatmap rect.cell"))
    assert len(cells) == 9  # learning rates x batch sizes
    values = sorted(float(cell.get_attribute("data-value") or "nan") for cell in cells)
    assert values[0] == pytest.approx(best[0]["objective"])
    heat = text(browser, "#objective-chart")
    assert "learning_rate" in heat and "batch_size" in heat  # the axes are named
    leaders = browser.find_elements(By.CSS_SELECTOR, "#leaderboard tr[data-index]")
    assert [int(r.get_attribute("data-index") or -1) for r in leaders[:5]] == [t["index"] for t in best]
    until(browser, lambda d: attribute(d, "#best-curves", "data-series") == "5")
    assert browser.find_elements(By.CSS_SELECTOR, "#best-curves canvas")
    screenshot(browser, tmp_path / "sweep.png", full_height=True)


def test_a_wrong_key_shows_a_message_and_no_data(server: Server, browser: WebDriver, tmp_path: Path) -> None:
    with server.client() as c:
        job_id = submit(c, "/v1/jobs", {"dataset": sine_points(20), "hyperparameters": {"epochs": 5, "batch_size": 4}})

    sign_in(browser, server, "tt_this-key-was-never-made")
    message = until(browser, lambda d: text(d, "#message"))
    assert "not accepted" in message and "401" in message
    assert browser.find_element(By.ID, "key-form").is_displayed()  # asked again
    assert job_id not in browser.page_source and not browser.find_elements(By.CSS_SELECTOR, "tr[data-id]")
    assert browser.execute_script("return sessionStorage.getItem('tinytrain.key')") is None
    screenshot(browser, tmp_path / "wrong-key.png")

    # A job's address with a wrong key: the same message, none of the job.
    sign_in(browser, server, "tt_this-key-was-never-made", f"#/jobs/{job_id}")
    until(browser, lambda d: "not accepted" in text(d, "#message"))
    assert not browser.find_elements(By.ID, "parameters")


def test_another_owners_job_and_sweep_are_not_found(server: Server, browser: WebDriver, tmp_path: Path) -> None:
    with server.client(server.new_key("someone-else")) as other:
        body = {"dataset": sine_points(20), "hyperparameters": {"epochs": 5, "batch_size": 4}, "name": "not yours"}
        job_id = submit(other, "/v1/jobs", body)
        sweep_id = submit(other, "/v1/sweeps", {**body, "grid": {"seed": [0, 1]}})

    sign_in(browser, server, server.key, f"#/jobs/{job_id}")
    until(browser, lambda d: text(d, "#view h1") == "Not found")
    assert "not found" in text(browser, "#message").lower()
    assert "not yours" not in browser.page_source and not browser.find_elements(By.ID, "parameters")
    screenshot(browser, tmp_path / "not-found.png")

    browser.get(f"{server.url}/ui/#/sweeps/{sweep_id}")
    until(browser, lambda d: text(d, "#view h1") == "Not found" and sweep_id in text(d, "#message"))
    assert "not yours" not in browser.page_source and not browser.find_elements(By.ID, "leaderboard")


def test_the_webhooks_page_lists_endpoints_and_their_deliveries(
    make_server: Callable[..., Server], browser: WebDriver, tmp_path: Path
) -> None:
    """Read-only: an endpoint whose receiver is down (a loopback port nothing listens on) shows
    its URL, events and the failed try of a ping, the error beside it."""
    server = make_server(webhook_allow_private="true", webhook_retry_seconds="3600")
    url = f"http://127.0.0.1:{free_port()}/hooks"
    with server.client() as c:
        hook = c.post("/v1/webhooks", json={"url": url, "events": ["job.succeeded"], "description": "ci"}).json()
        ping = c.post(f"/v1/webhooks/{hook['id']}/test").json()
        deadline = time.monotonic() + 30
        while not c.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["items"]:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    sign_in(browser, server, server.key, "#/webhooks")
    until(browser, lambda d: attribute(d, "#view", "data-loaded") == "true")
    assert url in text(browser, "#view h2")
    assert "job.succeeded" in text(browser, f"p.webhook[data-id='{hook['id']}']")
    row = until(browser, lambda d: text(d, f"tr[data-delivery='{ping['id']}']"))
    assert "ping" in row and "Connect" in row
    screenshot(browser, tmp_path / "webhooks.png", docs_name="webhooks.png")
