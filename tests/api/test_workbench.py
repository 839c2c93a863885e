"""The dashboard as a workbench, in a real headless Chromium against a real `tinytrain serve`: a
job started from the New job page (a CSV through the file input, hyperparameters typed, submitted
with the keyboard, the live page), the fit moving while it trains, what a bad CSV line and a bad
hyperparameter show (and that nothing is stored), a random sweep started from the New sweep page
and its slice plots, and three jobs compared.

docs/dashboard.png and docs/compare.png are taken here (`make screenshot`)."""

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from tests.support import browser as dashboard
from tests.support.browser import ENDED, PARAMETERS, attribute, needs_chromium, number, screenshot, sign_in, text, until
from tests.support.client import wait_for
from tests.support.data import sine_points
from tests.support.server import Server

pytestmark = needs_chromium
browser = dashboard.browser  # the fixture (tests/conftest.py has server)


def write_csv(path: Path, points: dict[str, list[float]]) -> Path:
    path.write_text("x,y\n" + "".join(f"{x!r},{y!r}\n" for x, y in zip(points["x"], points["y"], strict=True)))
    return path


def type_into(driver: WebDriver, element_id: str, value: str) -> None:
    field = driver.find_element(By.ID, element_id)
    field.clear()
    field.send_keys(value)


def counts(client: httpx.Client) -> dict[str, int]:
    return {
        what: len(client.get(f"/v1/{what}", params={"limit": 100}).json()["items"])
        for what in ("datasets", "jobs", "sweeps")
    }


def loaded(driver: WebDriver) -> bool:
    return attribute(driver, "#view", "data-loaded") == "true"


def tab_through(driver: WebDriver, form_id: str) -> tuple[list[str], list[str]]:
    """The ids Tab visits from the page's heading, and the ids of the form's visible controls in
    document order (a radio group is one stop: its checked radio)."""
    expected: list[str] = driver.execute_script(
        """return [...document.getElementById(arguments[0]).querySelectorAll("input, select, textarea, button")]
             .filter((el) => el.offsetParent !== null && !el.disabled && (el.type !== "radio" || el.checked))
             .map((el) => el.id || el.getAttribute("aria-label"))""",
        form_id,
    )
    driver.execute_script("document.querySelector('#view h1').focus()")
    visited = []
    for _ in expected:
        ActionChains(driver).send_keys(Keys.TAB).perform()  # to the page: a file input takes keys as a path
        element = driver.switch_to.active_element
        visited.append(element.get_attribute("id") or element.get_attribute("aria-label") or "")
    return visited, expected


def unlabelled(driver: WebDriver, form_id: str) -> list[str]:
    """The form's controls with no label a screen reader would read."""
    found: list[str] = driver.execute_script(
        """return [...document.getElementById(arguments[0]).querySelectorAll("input, select, textarea")]
             .filter((el) => !el.labels?.length && !el.getAttribute("aria-label")).map((el) => el.outerHTML)""",
        form_id,
    )
    return found


def new_sweep(server: Server, driver: WebDriver, points: dict[str, list[float]]) -> None:
    """The New sweep page, every control labelled, the points typed into its paste box."""
    sign_in(driver, server, server.key, "#/new-sweep")
    until(driver, lambda d: loaded(d) and d.find_elements(By.ID, "new-sweep"))
    assert unlabelled(driver, "new-sweep") == []
    driver.find_element(By.ID, "source-paste").send_keys(Keys.SPACE)
    rows = "".join(f"{x},{y}\n" for x, y in zip(points["x"], points["y"], strict=True))
    driver.find_element(By.ID, "f-dataset-paste").send_keys(rows)


def sweep_started(server: Server, driver: WebDriver) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The sweep whose page the browser landed on, once it has ended, and its trials."""
    until(driver, lambda d: "#/sweeps/sw_" in d.current_url)
    sweep_id = driver.current_url.rsplit("/", 1)[1]
    with server.client() as c:
        deadline = time.monotonic() + 180
        while (sweep := c.get(f"/v1/sweeps/{sweep_id}").json())["status"] not in ENDED:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        trials: list[dict[str, Any]] = c.get(f"/v1/sweeps/{sweep_id}/trials", params={"limit": 100}).json()["items"]
    return sweep, trials


def first_progress(client: httpx.Client, job_id: str) -> dict[str, Any]:
    """The data of a job's first progress event."""
    with client.stream("GET", f"/v1/jobs/{job_id}/events") as events:
        kind = None
        for line in events.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: ") and kind == "progress":
                data: dict[str, Any] = json.loads(line.removeprefix("data: "))
                return data
    raise AssertionError("no progress event")


def test_a_job_started_from_the_new_job_page_lands_on_its_live_page(
    server: Server, browser: WebDriver, tmp_path: Path
) -> None:
    points = sine_points(2000, seed=4)
    sign_in(browser, server, server.key, "#/new-job")
    until(browser, loaded)
    # Every field has a label and Tab visits them in the order they are shown, the button last.
    assert unlabelled(browser, "new-job") == []
    visited, expected = tab_through(browser, "new-job")
    assert visited == expected and expected[-1] == "new-job-submit"
    assert "f-hyperparameters-learning_rate" in expected and "f-dataset-file" in expected

    browser.find_element(By.ID, "f-dataset-file").send_keys(str(write_csv(tmp_path / "sine.csv", points)))
    until(browser, lambda d: "2,000 points" in text(d, "#data-status"))
    # The defaults and limits shown are the service's.
    assert browser.find_element(By.ID, "f-hyperparameters-learning_rate").get_attribute("value") == "0.1"
    assert "≤ 1e+6" in text(browser, "#f-hyperparameters-epochs-hint")
    typed = {"learning_rate": "0.002", "batch_size": "1", "epochs": "30000", "seed": "7"}
    for name, value in typed.items():
        type_into(browser, f"f-hyperparameters-{name}", value)
    type_into(browser, "f-name", "from the form")
    browser.find_element(By.ID, "new-job-submit").send_keys(Keys.ENTER)

    until(browser, lambda d: "#/jobs/job_" in d.current_url)
    job_id = browser.current_url.rsplit("/", 1)[1]
    until(browser, lambda d: "from the form" in text(d, "#view h1"))
    until(browser, lambda d: int(attribute(d, "#loss-chart", "data-points") or 0) >= 3000, timeout=120)
    screenshot(browser, tmp_path / "job-training.png", docs_name="dashboard.png")
    until(browser, lambda d: attribute(d, "#view", "data-finished") == "true", timeout=300)
    with server.client() as c:
        job = c.get(f"/v1/jobs/{job_id}").json()
        stored = c.get(f"/v1/datasets/{job['dataset_id']}/points").json()
    assert job["status"] == "succeeded" and job["name"] == "from the form"
    assert {k: str(job["hyperparameters"][k]) for k in typed} == typed
    assert stored == points  # the file's points, as the service parsed them
    for name in PARAMETERS:
        shown = number(text(browser, f'#parameters td[data-name="{name}"]'))
        assert shown == pytest.approx(job["result"]["parameters"][name], rel=1e-3, abs=1e-3), name
    until(browser, lambda d: attribute(d, "#fit-chart", "data-curve") == "drawn")
    screenshot(browser, tmp_path / "job-finished.png")


def test_the_fit_moves_while_the_job_trains(server: Server, browser: WebDriver, tmp_path: Path) -> None:
    body = {
        "dataset": sine_points(2000),
        "hyperparameters": {"learning_rate": 0.002, "batch_size": 1, "epochs": 60_000},
    }
    with server.client() as c:
        job_id = c.post("/v1/jobs", json=body).json()["id"]
        if "parameters" not in first_progress(c, job_id):
            c.post(f"/v1/jobs/{job_id}/cancel")
            pytest.skip("this service's progress events carry no parameters yet")
        sign_in(browser, server, server.key, f"#/jobs/{job_id}")
        until(browser, lambda d: attribute(d, "#parameters tr", "data-live") is not None)
        until(browser, lambda d: attribute(d, "#fit-chart", "data-curve") == "drawn")
        fit = browser.find_element(By.ID, "fit-chart")
        before, w11 = fit.screenshot_as_png, text(browser, '#parameters td[data-name="w11"]')
        (tmp_path / "fit-before.png").write_bytes(before)
        until(browser, lambda d: text(d, '#parameters td[data-name="w11"]') != w11, timeout=60)
        assert c.get(f"/v1/jobs/{job_id}").json()["status"] == "running"
        time.sleep(0.1)  # the next frame draws it
        after = fit.screenshot_as_png
        (tmp_path / "fit-after.png").write_bytes(after)
        assert after != before
        screenshot(browser, tmp_path / "training.png", full_height=True)
        until(browser, lambda d: attribute(d, "#view", "data-finished") == "true", timeout=300)
        job = c.get(f"/v1/jobs/{job_id}").json()
    for name in PARAMETERS:
        shown = number(text(browser, f'#parameters td[data-name="{name}"]'))
        assert shown == pytest.approx(job["result"]["parameters"][name], rel=1e-3, abs=1e-3), name


DROP = """const [text, name, target] = arguments;
const files = new DataTransfer();
files.items.add(new File([text], name, { type: "text/csv" }));
target.dispatchEvent(new DragEvent("drop", { dataTransfer: files, bubbles: true, cancelable: true }));"""


def test_a_bad_csv_line_and_a_bad_hyperparameter_show_beside_their_fields_and_store_nothing(
    server: Server, browser: WebDriver, tmp_path: Path
) -> None:
    with server.client() as c:
        before = counts(c)
    sign_in(browser, server, server.key, "#/new-job")
    until(browser, loaded)
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n0,1\n1,2\n2,oops\n3,4\n")
    browser.find_element(By.ID, "f-dataset-file").send_keys(str(bad))
    message = until(browser, lambda d: text(d, '[data-error-for="dataset.file"]'))
    assert "bad.csv" in message and "line 4" in message and "2,oops" in message
    assert attribute(browser, "#f-dataset-file", "aria-invalid") == "true"
    browser.find_element(By.ID, "new-job-submit").send_keys(Keys.ENTER)
    until(browser, lambda d: "Nothing was started" in text(d, "#new-job-errors"))
    assert "line 4" in text(browser, '[data-error-for="dataset.file"]')  # still beside the file
    screenshot(browser, tmp_path / "bad-csv.png")

    # A good file dropped on the field replaces it; then two bad hyperparameters.
    row = browser.find_element(By.ID, "f-dataset-file").find_element(By.XPATH, "..")
    browser.execute_script(DROP, "x,y\n0,0\n1,1\n2,0\n3,1\n", "good.csv", row)
    until(browser, lambda d: "good.csv: 4 points" in text(d, "#data-status"))
    assert text(browser, '[data-error-for="dataset.file"]') == ""
    type_into(browser, "f-hyperparameters-learning_rate", "-0.5")
    type_into(browser, "f-hyperparameters-epochs", "2.5")
    browser.find_element(By.ID, "new-job-submit").send_keys(Keys.ENTER)
    until(browser, lambda d: text(d, '[data-error-for="hyperparameters.learning_rate"]'))
    assert "greater than 0" in text(browser, '[data-error-for="hyperparameters.learning_rate"]')
    assert "integer" in text(browser, '[data-error-for="hyperparameters.epochs"]')
    for name in ("learning_rate", "epochs"):
        assert attribute(browser, f"#f-hyperparameters-{name}", "aria-invalid") == "true"
    assert browser.switch_to.active_element.get_attribute("id") == "new-job-errors"  # read out first
    assert "#/new-job" in browser.current_url
    screenshot(browser, tmp_path / "bad-hyperparameters.png", full_height=True)

    # A sweep's bad grid value, beside its grid field.
    browser.get(f"{server.url}/ui/#/new-sweep")
    until(browser, lambda d: loaded(d) and d.find_elements(By.ID, "new-sweep"))
    browser.find_element(By.ID, "source-paste").send_keys(Keys.SPACE)
    browser.find_element(By.ID, "f-dataset-paste").send_keys("x,y\n0,0\n1,1\n2,0\n3,1\n")
    type_into(browser, "f-grid-learning_rate", "0.1, -1")
    until(browser, lambda d: text(d, "#trial-count").startswith("2 trials"))
    browser.find_element(By.ID, "new-sweep-submit").send_keys(Keys.ENTER)
    message = until(browser, lambda d: text(d, '[data-error-for="grid.learning_rate"]'))
    assert "greater than 0" in message and "-1" in message
    with server.client() as c:
        assert counts(c) == before  # no dataset, job or sweep stored


def test_a_random_sweep_from_the_new_sweep_page_shows_a_slice_per_hyperparameter(
    server: Server, browser: WebDriver, tmp_path: Path
) -> None:
    new_sweep(server, browser, sine_points(200, seed=2))
    type_into(browser, "f-hyperparameters-epochs", "150")
    browser.find_element(By.ID, "mode-random").send_keys(Keys.SPACE)
    for name, value in {"trials": "12", "seed": "5", "learning_rate-min": "0.01", "learning_rate-max": "3"}.items():
        type_into(browser, f"f-random-{name}", value)
    browser.find_element(By.ID, "f-random-learning_rate-log").send_keys(Keys.SPACE)
    type_into(browser, "f-random-batch_size-min", "2")
    type_into(browser, "f-random-batch_size-max", "40")
    type_into(browser, "f-random-shuffle_values", "true, false")
    until(browser, lambda d: text(d, "#trial-count").startswith("12 trials"))
    browser.find_element(By.ID, "new-sweep-submit").send_keys(Keys.ENTER)

    sweep, trials = sweep_started(server, browser)
    sweep_id = sweep["id"]
    assert sweep["status"] == "succeeded" and sweep["trials"]["total"] == 12
    assert sweep["random"]["learning_rate"] == {"min": 0.01, "max": 3.0, "log": True}
    assert sweep["random"]["batch_size"] == {"min": 2, "max": 40}
    assert sweep["random"]["shuffle_values"] == [True, False]
    drawn = sum(1 for t in trials if t["objective"] is not None and t["objective"] > 0)

    until(browser, lambda d: attribute(d, "#slice-shuffle", "data-points") == str(drawn), timeout=60)
    scales = {k: attribute(browser, f"#slice-{k}", "data-scale") for k in ("learning_rate", "batch_size", "shuffle")}
    assert scales == {"learning_rate": "log", "batch_size": "linear", "shuffle": "linear"}
    for key in scales:
        assert attribute(browser, f"#slice-{key}", "data-points") == str(drawn)
        assert browser.find_elements(By.CSS_SELECTOR, f"#slice-{key} canvas")
    assert attribute(browser, "#slice-shuffle", "data-categories") == "false,true"  # an axis of named values
    screenshot(browser, tmp_path / "sweep-slices.png", full_height=True)

    # The two best trials, picked from the leaderboard once it shows the ended sweep, compared.
    best = sorted((t for t in trials if t["objective"] is not None), key=lambda t: t["objective"])[:2]
    top = [str(t["index"]) for t in best]
    until(
        browser,
        lambda d: (
            [r.get_attribute("data-index") for r in d.find_elements(By.CSS_SELECTOR, "#leaderboard tr")][:2] == top
        ),
    )
    for box in browser.find_elements(By.CSS_SELECTOR, "#leaderboard input.pick")[:2]:
        box.send_keys(Keys.SPACE)
    until(browser, lambda d: text(d, "#compare-link") == "Compare (2)")
    browser.find_element(By.ID, "compare-link").send_keys(Keys.ENTER)
    until(browser, lambda d: loaded(d) and attribute(d, "#compare-loss", "data-series") == "2")
    heads = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#compare-table thead a")]
    assert heads == [f"{sweep_id} #{t['index']}" for t in best]
    assert attribute(browser, "#compare-fit", "data-curves") == "2"


def test_three_jobs_compared_side_by_side_and_by_a_link(server: Server, browser: WebDriver, tmp_path: Path) -> None:
    rates = (0.03, 0.1, 0.3)
    with server.client() as c:
        dataset_id = c.post("/v1/datasets", json=sine_points(300, seed=1)).json()["id"]
        ids = []
        for rate in rates:
            body = {
                "dataset_id": dataset_id,
                "hyperparameters": {"learning_rate": rate, "batch_size": 8, "epochs": 300},
                "name": f"rate {rate}",
            }
            ids.append(c.post("/v1/jobs", json=body).json()["id"])
        jobs = [wait_for(c, job_id, "succeeded") for job_id in ids]

    sign_in(browser, server, server.key)
    until(browser, lambda d: all(d.find_elements(By.CSS_SELECTOR, f'#jobs tr[data-id="{i}"]') for i in ids))
    for job_id in ids:  # ticked with the keyboard
        browser.find_element(By.CSS_SELECTOR, f'#jobs tr[data-id="{job_id}"] input.pick').send_keys(Keys.SPACE)
    until(browser, lambda d: text(d, "#compare-link") == "Compare (3)")
    browser.find_element(By.ID, "compare-link").send_keys(Keys.ENTER)
    until(browser, loaded)

    def drawn(d: WebDriver) -> tuple[str | None, str | None, int, int]:
        # uPlot's legend: the x series first, then one per series drawn.
        legend = "return document.querySelectorAll(arguments[0] + ' .u-legend .u-series').length"
        return (
            attribute(d, "#compare-loss", "data-series"),
            attribute(d, "#compare-fit", "data-curves"),
            d.execute_script(legend, "#compare-loss") - 1,
            d.execute_script(legend, "#compare-fit") - 2,  # and the data's points
        )

    until(browser, lambda d: drawn(d) == ("3", "3", 3, 3))
    heads = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#compare-table thead a")]
    assert heads == [f"rate {rate}" for rate in rates]
    rate_row = browser.find_element(By.CSS_SELECTOR, '#compare-table tr[data-key="learning_rate"]')
    assert "differs" in (rate_row.get_attribute("class") or "")
    assert [number(td.text) for td in rate_row.find_elements(By.TAG_NAME, "td")] == list(rates)
    losses = browser.find_elements(By.CSS_SELECTOR, '#compare-table tr[data-key="final_loss"] td')
    for td, job in zip(losses, jobs, strict=True):
        assert number(td.text) == pytest.approx(job["result"]["final_loss"], rel=1e-3)
    screenshot(browser, tmp_path / "compare.png", full_height=True, docs_name="compare.png")
    browser.find_element(By.ID, "only-differing").send_keys(Keys.SPACE)
    until(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, '#compare-table tr[data-key="epochs"]'))
    assert browser.find_elements(By.CSS_SELECTOR, '#compare-table tr[data-key="learning_rate"]')

    # The link alone reopens the comparison: nothing picked in this tab any more.
    address = attribute(browser, "#compare-address", "href")
    assert address is not None and all(job_id in address for job_id in ids)
    browser.execute_script("sessionStorage.removeItem('tinytrain.compare'); location.hash = '#/'")
    until(browser, lambda d: text(d, "#compare-link") == "Compare (0)")
    browser.get(address)
    until(browser, lambda d: loaded(d) and drawn(d) == ("3", "3", 3, 3))


def test_a_halving_sweep_from_the_new_sweep_page_shows_its_rungs(
    server: Server, browser: WebDriver, tmp_path: Path
) -> None:
    with server.client() as c:
        before = counts(c)
    new_sweep(server, browser, sine_points(200, seed=3))
    type_into(browser, "f-hyperparameters-epochs", "27")
    type_into(browser, "f-hyperparameters-validation_fraction", "0.2")
    browser.find_element(By.ID, "mode-random").send_keys(Keys.SPACE)
    for name, value in {"trials": "9", "seed": "3", "learning_rate-min": "0.02", "learning_rate-max": "1.5"}.items():
        type_into(browser, f"f-random-{name}", value)
    # The halving fields, reached with the keyboard, their bounds the service's.
    browser.find_element(By.ID, "f-halving-set").send_keys(Keys.SPACE)
    assert browser.find_element(By.ID, "f-halving-reduction_factor").get_attribute("value") == "3"
    assert "≥ 2" in text(browser, "#f-halving-reduction_factor-hint")
    assert "≤ 32" in text(browser, "#f-halving-brackets-hint")
    visited, expected = tab_through(browser, "new-sweep")
    assert visited == expected and expected[-1] == "new-sweep-submit"
    assert {"f-halving-set", "f-halving-min_epochs", "f-halving-reduction_factor", "f-halving-brackets"} <= set(
        expected
    )
    type_into(browser, "f-halving-min_epochs", "3")
    type_into(browser, "f-halving-reduction_factor", "1")
    browser.find_element(By.ID, "new-sweep-submit").send_keys(Keys.ENTER)
    message = until(browser, lambda d: text(d, '[data-error-for="halving.reduction_factor"]'))
    assert "greater than or equal to 2" in message
    assert attribute(browser, "#f-halving-reduction_factor", "aria-invalid") == "true"
    assert "Nothing was started" in text(browser, "#new-sweep-errors")
    with server.client() as c:
        assert counts(c) == before  # no dataset, job or sweep stored

    type_into(browser, "f-halving-reduction_factor", "3")
    browser.find_element(By.ID, "new-sweep-submit").send_keys(Keys.ENTER)
    sweep, trials = sweep_started(server, browser)
    assert sweep["status"] == "succeeded" and sweep["halving"] == {
        "min_epochs": 3,
        "reduction_factor": 3,
        "brackets": 1,
    }
    assert sweep["trials"]["pruned"] == 8 and sweep["trials"]["succeeded"] == 1  # 9 -> 3 -> 1

    until(browser, lambda d: attribute(d, "#rungs-chart", "data-series") == "9", timeout=60)
    until(browser, lambda d: "1 succeeded, 8 pruned" in text(d, "#view .summary"))
    # What uPlot draws: each series' label and how many epochs it has a point at.
    drawn: list[list[Any]] = browser.execute_script(
        """const u = document.getElementById("rungs-chart").chart;
           return u.series.slice(1).map((s, i) => [s.label, u.data[i + 1].filter((v) => v != null).length]);"""
    )
    by_index = {int(label.split()[0][1:]): n for label, n in drawn}
    assert by_index == {t["index"]: t["epochs_completed"] for t in trials}
    survivor = next(t for t in trials if t["status"] == "succeeded")
    assert by_index[survivor["index"]] == 27
    assert all(by_index[t["index"]] in (3, 9) for t in trials if t["status"] == "pruned")
    screenshot(browser, tmp_path / "halving-rungs.png", full_height=True)
