"""The MLflow UI in a real browser: a campaign's trials are listed under its campaign run, and its
best trials under their own link (the browser's machinery: ``search.bench.browser``; `.ci/run`
installs Chromium)."""

import os

import pytest
from mlflow import MlflowClient

from search.bench.browser import (
    CHROMEDRIVER,
    chromium,
    expand_button,
    free_port,
    start_ui,
    stop,
    wait_until_served,
)
from search.cli import main
from tests.conftest import ROOT

WAIT_S = 30  # for the page to render (the first load compiles a large bundle on a 2-core CPU)


@pytest.mark.slow
@pytest.mark.skipif(  # under CI=true it must run: CI installs them
    not CHROMEDRIVER.exists() and os.environ.get("CI") != "true",
    reason=f"no {CHROMEDRIVER} (apt-get install chromium chromium-driver)",
)
def test_the_experiment_page_lists_the_trials_under_the_campaign(tiny, runs, tmp_path):
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    assert main(["run", str(tiny), "--runs", str(runs), "--trials", "2", "-q"]) == 0
    client = MlflowClient(tracking_uri=f"sqlite:///{(runs / 'mlflow.db').resolve()}")
    exp = client.get_experiment_by_name("tiny")
    (campaign,) = client.search_runs([exp.experiment_id], filter_string="tags.`archsearch.kind` = 'campaign'")
    trials = client.search_runs([exp.experiment_id], filter_string="tags.`archsearch.kind` = 'trial'")
    trials.sort(key=lambda r: int(r.data.tags["archsearch.trial"]))
    assert [r.info.run_name[:5] for r in trials] == ["t000 ", "t001 "]

    port = free_port()
    log = tmp_path / "ui.log"
    proc = start_ui(runs, port, log, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        driver = chromium()  # starts while the UI starts
        try:
            served = wait_until_served(proc, port, log)
            assert exp.experiment_id in [e["experiment_id"] for e in served]
            try:
                # the links `archsearch ui` printed: the campaign's runs, its best trials
                said = log.read_text().splitlines()
                (runs_link,) = [line.split(": ", 1)[1] for line in said if line.startswith("  tiny: ")]
                (best_link,) = [line.split("best trials: ", 1)[1] for line in said if "best trials: " in line]
                driver.get(runs_link)
                wait = WebDriverWait(driver, WAIT_S, poll_frequency=0.2)

                def link(run):  # a run's name in the Run Name column links to the run's page
                    href = f"#/experiments/{exp.experiment_id}/runs/{run.info.run_id}"
                    return By.CSS_SELECTOR, f"div[role='row'][row-id='{run.info.run_id}'] a[href='{href}']"

                parent = wait.until(EC.visibility_of_element_located(link(campaign)))
                assert parent.get_attribute("textContent") == "tiny"
                assert "/runs" in driver.current_url

                # trials are nested under the campaign run: collapsed at first, a click on the campaign
                # row's expand button (the one button in its Run Name cell) lists them
                if not driver.find_elements(*link(trials[0])):
                    wait.until(EC.element_to_be_clickable(expand_button(campaign.info.run_id))).click()
                shown = [wait.until(EC.visibility_of_element_located(link(t))) for t in trials]

                def row_index(run):  # the row's place in the table
                    row = driver.find_element(By.CSS_SELECTOR, f"div[role='row'][row-id='{run.info.run_id}']")
                    return int(row.get_attribute("row-index"))

                for trial, element in zip(trials, shown, strict=True):
                    assert element.get_attribute("textContent") == trial.info.run_name
                    # listed under the campaign: after its row, and indented further
                    assert row_index(trial) > row_index(campaign)
                    assert element.location["x"] > parent.location["x"]

                # the link to the best trials: the trials alone, flat, the highest val_acc first
                assert "orderByKey=metrics.%60val_acc%60" in best_link
                driver.get(best_link)
                ranked = sorted(trials, key=lambda r: -r.data.metrics["val_acc"])
                wait.until(EC.visibility_of_element_located(link(ranked[0])))
                wait.until(EC.visibility_of_element_located(link(ranked[1])))
                if ranked[0].data.metrics["val_acc"] > ranked[1].data.metrics["val_acc"]:  # once sorted
                    rerendered = (StaleElementReferenceException, NoSuchElementException)
                    WebDriverWait(driver, WAIT_S, poll_frequency=0.2, ignored_exceptions=rerendered).until(
                        lambda d: row_index(ranked[0]) < row_index(ranked[1])
                    )
                assert not driver.find_elements(*link(campaign))
                driver.save_screenshot(str(tmp_path / "best.png"))
                driver.get(runs_link)  # the whole table again, not the filter the page last had
                wait.until(EC.visibility_of_element_located(link(campaign)))

                # the assistant panel, where there is one, covers the table's right half in the screenshot
                close = By.CSS_SELECTOR, "button[data-component-id='mlflow.assistant.chat_panel.close']"
                for button in driver.find_elements(*close):
                    button.click()
                wait.until(EC.invisibility_of_element_located(close))
            finally:  # the screenshot and the page, also when an assertion failed
                driver.save_screenshot(str(tmp_path / "experiment.png"))
                (tmp_path / "experiment.html").write_text(driver.page_source)
        finally:
            driver.quit()
    finally:
        stop(proc)

    png = (tmp_path / "experiment.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
