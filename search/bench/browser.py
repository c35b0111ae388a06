"""The MLflow UI in headless Chromium, timed: what ``archsearch bench scale`` measures of a large
campaign's pages, and what the browser test drives.

Needs Debian's ``chromium`` and ``chromium-driver`` and selenium (the ``dev`` extra). MLflow 3.x
opens an experiment on its GenAI view; the links ``archsearch ui`` prints open the model-training
runs table. Nested runs are collapsed under their parent: the parent's Run Name cell holds an
expand button, and the children, once expanded, follow it as indented rows.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def missing() -> str | None:
    """Why the browser cannot be driven here (None: it can)."""
    if not CHROMEDRIVER.exists() or not CHROMIUM.exists():
        return f"no {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "no selenium (pip install -e '.[dev]')"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ui(runs: Path, port: int, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``archsearch ui`` over ``runs`` in a process group of its own, its output in ``log``."""
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "search", "ui", "--runs", str(runs), "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_until_served(proc: subprocess.Popen, port: int, log: Path, timeout: float = 120.0) -> list:
    """Polls the REST API until it lists the experiments; fails early if the UI exits."""
    url = f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/search?max_results=10"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"`archsearch ui` exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return json.loads(response.read())["experiments"]
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the UI did not answer on port {port} in {timeout} s:\n{log.read_text()}")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the UI's process group (archsearch, mlflow, uvicorn), then SIGKILL what is left."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            os.killpg(proc.pid, 0)  # ProcessLookupError once the whole group is gone
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def chromium() -> Any:
    """A headless Chromium driven by selenium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,900"):
        options.add_argument(argument)
    options.binary_location = str(CHROMIUM)
    return webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))


def printed_links(log: Path, name: str) -> tuple[str, str | None]:
    """The links ``archsearch ui`` printed for campaign ``name``: its runs table, its best trials."""
    lines = log.read_text().splitlines()
    runs = next(line.split(": ", 1)[1] for line in lines if line.startswith(f"  {name}: "))
    after = lines[lines.index(f"  {name}: {runs}") + 1 :]
    best = next(iter(after), "")
    return runs, best.split("best trials: ", 1)[1] if "best trials: " in best else None


def row(run_id: str) -> tuple[str, str]:
    """A run's row in the runs table."""
    return "css selector", f"div[role='row'][row-id='{run_id}']"


def expand_button(run_id: str) -> tuple[str, str]:
    """The expand button of a parent run's row (the one button in its Run Name cell)."""
    return "css selector", f"{row(run_id)[1]} div[col-id*='Run Name'] button"


def page_seconds(
    runs: Path, name: str, campaign_run: str, best_run: str, env: dict[str, str], wait_s: float = 120.0
) -> dict:
    """Seconds for the UI to show a campaign, each page opened afresh after a first load of the UI
    (its scripts cached): the campaign link to the campaign's row, then its trials expanded
    (the first page of them); the best-trials link to the best trial's row."""
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    port, log = free_port(), runs / "ui-bench.log"
    proc = start_ui(runs, port, log, env)
    out: dict[str, Any] = {}
    try:
        driver = chromium()
        try:
            wait_until_served(proc, port, log)
            wait = WebDriverWait(driver, wait_s, poll_frequency=0.05)
            driver.get(f"http://127.0.0.1:{port}/")
            wait.until(lambda d: d.execute_script("return document.readyState") == "complete")
            runs_link, best_link = printed_links(log, name)
            driver.get("about:blank")
            t = time.perf_counter()
            driver.get(runs_link)
            wait.until(EC.visibility_of_element_located(row(campaign_run)))
            out["campaign_row_seconds"] = time.perf_counter() - t
            t = time.perf_counter()
            wait.until(EC.element_to_be_clickable(expand_button(campaign_run))).click()
            wait.until(lambda d: len(d.find_elements("css selector", "div[role='row'][row-id]")) > 1)
            out["trials_expanded_seconds"] = time.perf_counter() - t
            out["rows_shown"] = len(driver.find_elements("css selector", "div[role='row'][row-id]"))
            if best_link is not None:
                driver.get("about:blank")
                t = time.perf_counter()
                driver.get(best_link)
                wait.until(EC.visibility_of_element_located(row(best_run)))
                out["best_trials_seconds"] = time.perf_counter() - t
        finally:
            driver.quit()
    finally:
        stop(proc)
    return out
