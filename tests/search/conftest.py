"""Fixtures for campaign tests: a tiny space on digits and a pre-migrated MLflow store."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TINY = """\
name: tiny
data: {dataset: digits}
architecture:
  depth: {choice: [1, 2]}
  layers:
    filters: {count: {choice: [4, 8]}, size: 3}
    activation: relu
    pool:
      choice:
        - {kind: lp, order: {choice: [1, 2, 10]}, size: 2, stride: 2}
        - {kind: max, size: 2, stride: 2}
    norm: {choice: [batch, none]}
    padding: same
training:
  lr: {loguniform: [1e-3, 1e-2]}
  epochs: 2
  batch_size: 64
search: {trials: 3, tpe: {startup_trials: 2}}
"""


@pytest.fixture(scope="session")
def template_store(tmp_path_factory) -> Path:
    """An MLflow SQLite store, migrated once (creating one runs the schema migrations: ~2 s)."""
    db = tmp_path_factory.mktemp("template") / "mlflow.db"
    # in a process of its own, so that the file is complete and closed when it is copied
    code = "import sys, mlflow; mlflow.MlflowClient(tracking_uri=sys.argv[1]).search_experiments()"
    subprocess.run([sys.executable, "-c", code, f"sqlite:///{db}"], check=True, capture_output=True)
    return db


@pytest.fixture
def runs(tmp_path, template_store, monkeypatch) -> Path:
    """A fresh runs folder holding a copy of the migrated store; MLFLOW_TRACKING_URI unset."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    path = tmp_path / "runs"
    path.mkdir()
    shutil.copy(template_store, path / "mlflow.db")
    return path


@pytest.fixture
def tiny(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


@pytest.fixture
def campaign_runs(tiny, runs) -> Path:
    """A runs folder holding a finished campaign of two trials of ``tiny``."""
    from search.cli import main

    assert main(["run", str(tiny), "--runs", str(runs), "--trials", "2", "-q"]) == 0
    return runs
