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
from search.outcome import Outcome
from search.retrain import Final
from search.run import check_same, given_points, last_lines, launch, make_executor, read_points
from search.settings import resolve

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
        predictions=[],
    )
    lines = last_lines(settings, store, state, "3 trials ended", 65.0).splitlines()
    assert lines == [
        "campaign tiny: 3 trials ended (2 ok, 1 failed) in 1m05s; compute 12s of training (device time, "
        "all trials)",
        "best: t002 l1 f8 k3 pmax  val_acc 0.8750",
        f"results: runs/mlflow.db (experiment 'tiny'); `archsearch leaderboard tiny --runs {tmp_path}`, "
        f"`archsearch ui --runs {tmp_path}`",
    ]
    # with a final stage and predicted trial times: both said, between the best and the results
    state.predictions = [(10.0, 12.0), (20.0, 18.0), (5.0, 5.0)]
    final = Final(2, "t002 l1 f8 k3 pmax", "r", 1, 0.8812, 0.4, 0.875, 61.0)
    lines = last_lines(settings, store, state, "3 trials ended", 65.0, [final]).splitlines()
    assert lines[2:4] == [
        "final: t002 l1 f8 k3 pmax  test_acc 0.8812 (1 epoch, 1m01s)",
        "trial times predicted for 3 trials: median actual/predicted 1.00, median error 11%",
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


def test_the_space_files_points_run_first_after_those_given_on_the_command_line(tiny, runs, capsys):
    from search.cli import main
    from tests.search.conftest import TINY

    point = (
        "  points:\n"
        "    - name: plain\n"
        "      architecture:\n"
        "        layers: [{filters: {count: 8}, pool: {kind: max, size: 2, stride: 2}, norm: batch}]\n"
        "      training: {lr: 0.005}\n"
    )
    tiny.write_text(
        TINY.replace("search: {trials: 3, tpe: {startup_trials: 2}}", "search:\n  trials: 2\n" + point)
    )
    settings = resolve(str(tiny), [], runs=runs)
    compiled = CompiledSpace(settings.space)
    ((_, config, source),) = given_points(settings, open_store(runs, None), compiled)
    assert source == "space point plain" and config["training"]["lr"] == 0.005
    assert main(["run", str(tiny), "--runs", str(runs), "-q"]) == 0
    first, second = open_store(runs, None).require("tiny").trials()
    assert first.source == "space point plain" and first.params["training.lr"] == "0.005"
    assert second.source is None  # then the search's own
    # a point outside the space is refused before anything runs, naming it
    tiny.write_text(tiny.read_text().replace("count: 8}", "count: 12}"))
    assert main(["run", str(tiny), "--runs", str(runs), "--name", "other", "-q"]) == 2
    err = capsys.readouterr().err
    assert "search.points[0] (plain): not a configuration of the space: " in err and "count" in err
    assert open_store(runs, None).find("other") is None
