"""A campaign as stored: the store its flags name, what it was started with, and the space and
data read back as it ran them (which a resume depends on)."""

import json

import pytest
import yaml

from search.campaign import load_campaign, open_store, resume_settings, runs_flag, stored_settings
from search.errors import UserError
from search.run import launch
from search.settings import RUNS, resolve
from search.space import parse_space, read_yaml

# what a space is, whatever file it was read from
MEANING = ("name", "data", "depths", "input_norm", "layers", "head", "training", "constraints", "search")


def meaning(space):
    return {field: getattr(space, field) for field in MEANING}


OVERRIDES = [
    "search.trials=1",
    "training.epochs=1",
    "training.lr={loguniform: [1e-3, 3e-3]}",
    "architecture.layers.filters.count={choice: [4, 6]}",
    "search.tpe.gamma=0.3",
]


def test_the_resolved_space_read_back_is_the_space_the_campaign_ran(tiny, runs):
    settings = resolve(str(tiny), OVERRIDES, runs=runs, quiet=True)
    assert launch(settings, open_store(runs, None)) == 0
    campaign = open_store(runs, None).require("tiny")
    # the file beside the campaign run, as a user reads it
    text = campaign.read_text("space.resolved.yaml")
    assert read_yaml(text, "space.resolved.yaml") == settings.raw
    assert meaning(parse_space(read_yaml(text, "x"), "x", text, "tiny")) == meaning(settings.space)
    # and what a resume resolves from campaign.json
    stored = stored_settings(campaign)
    assert stored["overrides"] == OVERRIDES and stored["space_path"] == str(tiny)
    resumed = resume_settings(open_store(runs, None), "tiny", ["search.trials=2"], runs=runs)
    assert meaning(resumed.space) == {
        **meaning(settings.space),
        "search": {**settings.space.search, "trials": 2},
    }
    assert resumed.identity() == settings.identity()
    space, data = load_campaign(campaign, runs / "data", None)
    assert meaning(space) == meaning(settings.space)
    assert data.fingerprint == stored["dataset"]["fingerprint"]


def test_a_campaign_whose_data_splits_otherwise_is_refused(tiny, runs, monkeypatch):
    settings = resolve(str(tiny), ["search.trials=1", "training.epochs=1"], runs=runs, quiet=True)
    assert launch(settings, open_store(runs, None)) == 0
    campaign = open_store(runs, None).require("tiny")
    stored = stored_settings(campaign)
    stored["dataset"]["fingerprint"] = "0123456789abcdef"
    monkeypatch.setattr(campaign, "read_text", lambda artifact, run_id=None: json.dumps(stored))
    with pytest.raises(UserError, match="the dataset's validation split differs"):
        load_campaign(campaign, runs / "data", None)
    monkeypatch.setattr(campaign, "read_text", lambda artifact, run_id=None: "{not json")
    with pytest.raises(UserError, match="campaign.json is not valid JSON"):
        stored_settings(campaign)


def test_the_store_is_the_flag_else_the_environment_else_sqlite_under_runs(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert open_store(tmp_path, None).uri == f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"
    assert open_store(tmp_path, None).where() == str(tmp_path / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking:5000")
    assert open_store(tmp_path, None).uri == "http://tracking:5000"
    assert open_store(tmp_path, "http://flag:5000", patience=7).client.patience == 7


def test_messages_name_the_runs_folder_only_when_it_is_not_the_default(tmp_path):
    assert runs_flag(RUNS) == ""
    assert runs_flag(tmp_path) == f" --runs {tmp_path}"


def test_a_settings_record_round_trips_through_yaml(tiny):
    settings = resolve(str(tiny), OVERRIDES)
    again = read_yaml(settings.resolved_yaml(), "x")
    assert again == settings.raw == yaml.safe_load(settings.resolved_yaml())
    assert meaning(parse_space(again, "x", "", "tiny")) == meaning(settings.space)
