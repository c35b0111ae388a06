"""``archsearch run``'s own parts: the files of given points, where trials run, a campaign that
exists with other settings, and the summary. (Whole campaigns: test_end_to_end.py.)"""

import json
from types import SimpleNamespace

import pytest
import torch
import yaml

from search.campaign import open_store
from search.compile import CompiledSpace
from search.errors import UserError
from search.executor import Inline
from search.run import check_same, given_points, last_lines, launch, make_executor, read_points
from search.settings import resolve
from search.trial import Outcome

CONFIG = {"architecture": {"layers": []}, "training": {"lr": 0.01}}


def test_points_come_from_yaml_json_or_sample_records(tmp_path):
    (tmp_path / "p.yaml").write_text(yaml.safe_dump([CONFIG, CONFIG]))
    (tmp_path / "p.json").write_text(json.dumps(CONFIG))  # one mapping: one point
    records = [{"arch": CONFIG["architecture"], "training": CONFIG["training"], "hash": "x", "valid": True}]
    (tmp_path / "s.json").write_text(json.dumps(records))  # `archsearch sample --json`
    assert read_points(str(tmp_path / "p.yaml")) == [CONFIG, CONFIG]
    assert read_points(str(tmp_path / "p.json")) == [CONFIG]
    assert read_points(str(tmp_path / "s.json")) == [CONFIG]


@pytest.mark.parametrize(
    ("text", "name", "message"),
    [
        ("[1, 2]", "p.yaml", "item 0 is not a mapping"),
        ("[]", "p.yaml", "expected a list of configurations"),
        ("{nope", "p.json", "not valid JSON"),
        ("a: [1\n", "p.yaml", "malformed YAML"),
    ],
)
def test_bad_points_files_are_one_line(tmp_path, text, name, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(UserError, match=message.replace("[", r"\[")):
        read_points(str(tmp_path / name))
    with pytest.raises(UserError, match="cannot read it"):
        read_points(str(tmp_path / "missing.yaml"))


def test_trials_run_in_this_process_unless_workers_are_asked_for(tiny, runs):
    settings = resolve(str(tiny), [], runs=runs, device="cpu")
    data = SimpleNamespace(to=lambda device: SimpleNamespace(x_train=torch.zeros(1)))
    executor, tag, device = make_executor(settings, data, SimpleNamespace(should_stop=lambda: False))
    assert isinstance(executor, Inline) and tag.startswith("cpu:") and device == "cpu"
    if not torch.cuda.is_available():
        packed = resolve(str(tiny), [], runs=runs, device="cpu", trials_per_gpu=2)
        with pytest.raises(UserError, match="--trials-per-gpu packs trials on GPUs, and torch sees none"):
            make_executor(packed, data, None)


def test_a_campaign_that_exists_runs_again_only_with_its_own_settings(tiny, runs):
    settings = resolve(str(tiny), ["search.trials=1", "training.epochs=1"], runs=runs, quiet=True)
    assert launch(settings, open_store(runs, None)) == 0
    campaign = open_store(runs, None).require("tiny")
    check_same(campaign, resolve(str(tiny), ["search.trials=5", "training.epochs=1"]))  # a run limit
    with pytest.raises(UserError, match=r"already exists with other settings \(training.epochs: 1 -> 2\)"):
        check_same(campaign, resolve(str(tiny), ["search.trials=1", "training.epochs=2"]))


def test_the_summary_says_why_it_stopped_what_ended_the_best_and_where_to_look(tiny, tmp_path):
    settings = resolve(str(tiny), [], runs=tmp_path)
    store = SimpleNamespace(where=lambda: "runs/mlflow.db")
    state = SimpleNamespace(
        ended={0: Outcome.OK, 1: Outcome.FAILED, 2: Outcome.OK},
        compute=12.5,
        best={"name": "t002 l1 f8 k3 pmax", "val_acc": 0.875},
    )
    lines = last_lines(settings, store, state, "3 trials ended", 65.0).splitlines()
    assert lines == [
        "campaign tiny: 3 trials ended (2 ok, 1 failed) in 1m05s; compute 12s of training (device time, "
        "all trials)",
        "best: t002 l1 f8 k3 pmax  val_acc 0.8750",
        f"results: runs/mlflow.db (experiment 'tiny'); `archsearch leaderboard tiny --runs {tmp_path}`, "
        f"`archsearch ui --runs {tmp_path}`",
    ]
    state.ended, state.best = {}, None
    assert last_lines(settings, store, state, "nothing left to run", 1.0).startswith(
        "campaign tiny: nothing left to run (none) in 1.0s"
    )


def test_given_points_must_be_configurations_of_the_space(tiny, runs, tmp_path):
    settings = resolve(str(tiny), [], runs=runs)
    compiled = CompiledSpace(settings.space)
    (config,) = compiled.sample(1)
    (tmp_path / "good.yaml").write_text(yaml.safe_dump([config]))
    good = resolve(str(tiny), [], runs=runs, points=str(tmp_path / "good.yaml"))
    ((vals, decoded, source),) = given_points(good, open_store(runs, None), compiled)
    assert decoded == config and compiled.decode(vals) == config and source == "points good.yaml[0]"
