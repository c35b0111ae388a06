"""Given configurations first: --warm-start from an earlier campaign, --points from a file."""

import json

import pytest
import yaml

from search.cli import main
from search.compile import CompiledSpace, OutsideSpace
from search.space import load_space
from tests.conftest import ROOT
from tests.search.test_end_to_end import campaign_of, client_for, trial_runs


@pytest.mark.parametrize("name", ["quickstart", "pinto_cox", "fg11_ht_l3", "ht_l3_1st", "fg11_screen"])
def test_every_sampled_config_encodes_to_an_assignment_that_decodes_back(name):
    compiled = CompiledSpace(load_space(ROOT / "spaces" / f"{name}.yaml"))
    for config in compiled.sample(50, seed=3):
        vals = compiled.encode(config)
        assert set(vals) == set(compiled.labels)
        assert compiled.decode(vals) == config


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["training"].update(lr=5.0), "training.lr: 5.0 is outside loguniform"),
        (
            lambda c: c["architecture"].update(layers=c["architecture"]["layers"] * 5),
            "where the space allows",
        ),
        (lambda c: c["architecture"]["head"].update(extra=1), "architecture.head: unknown keys ['extra']"),
        (lambda c: c["architecture"]["layers"][0]["pool"].update(order=0.5), "architecture.layers[0].pool"),
    ],
)
def test_a_config_outside_the_space_names_the_key(change, message):
    compiled = CompiledSpace(load_space(ROOT / "spaces" / "quickstart.yaml"))
    config = compiled.sample(1, seed=0)[0]
    change(config)
    with pytest.raises(OutsideSpace, match=message.replace("[", r"\[").replace("]", r"\]")):
        compiled.encode(config)


def configs(runs, name):
    client = client_for(runs)
    exp, _ = campaign_of(client, name)
    return trial_runs(client, exp.experiment_id), client


def test_warm_start_evaluates_the_best_trials_of_an_earlier_campaign_first(tiny, runs, capsys):
    assert main(["run", str(tiny), "--runs", str(runs), "--trials", "4", "--name", "first"]) == 0
    args = ["run", str(tiny), "--runs", str(runs), "--trials", "4", "--name", "second"]
    assert main([*args, "--warm-start", "first", "--warm-start-top", "2"]) == 0
    capsys.readouterr()
    earlier, client = configs(runs, "first")
    best = sorted(earlier, key=lambda r: (r.data.metrics["loss"], int(r.data.tags["archsearch.trial"])))[:2]
    later, _ = configs(runs, "second")
    assert len(later) == 4
    for run, source in zip(later[:2], best, strict=True):  # in order, best first
        assert run.data.tags["archsearch.config_hash"] == source.data.tags["archsearch.config_hash"]
        assert (
            run.data.tags["archsearch.source"]
            == f"warm-start first t{int(source.data.tags['archsearch.trial']):03d}"
        )
        assert run.data.metrics["train_seconds"] > 0  # trained again, not copied
    assert all("archsearch.source" not in r.data.tags for r in later[2:])

    assert main(["leaderboard", "second", "--runs", str(runs)]) == 0
    table = capsys.readouterr().out
    assert "source" in table.splitlines()[0] and "warm-start first t0" in table


def test_points_from_a_file_are_evaluated_first_in_order(tiny, runs, tmp_path, capsys):
    compiled = CompiledSpace(load_space(tiny))
    given = compiled.sample(2, seed=11)
    points = tmp_path / "points.yaml"
    points.write_text(yaml.safe_dump(given))
    assert main(["run", str(tiny), "--runs", str(runs), "--trials", "3", "--points", str(points)]) == 0
    children, _ = configs(runs, "tiny")
    assert [json.loads(c.data.tags["archsearch.vals"]) for c in children[:2]] == [
        compiled.encode(g) for g in given
    ]
    assert [c.data.tags["archsearch.source"] for c in children[:2]] == [
        "points points.yaml[0]",
        "points points.yaml[1]",
    ]

    # sample --json records work as points too
    capsys.readouterr()
    assert main(["sample", str(tiny), "-n", "1", "--seed", "5", "--json"]) == 0
    sampled = tmp_path / "sampled.json"
    sampled.write_text(capsys.readouterr().out)
    assert (
        main(
            ["run", str(tiny), "--runs", str(runs), "--name", "s", "--trials", "1", "--points", str(sampled)]
        )
        == 0
    )
    (child,), _ = configs(runs, "s")
    assert child.data.tags["archsearch.source"] == "points sampled.json[0]"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--warm-start", "nope"], "no campaign named 'nope'"),
        (["--points", "missing.yaml"], "--points missing.yaml: cannot read it"),
        (["--points", "bad.yaml"], "points bad.yaml[0]: not a configuration of"),
    ],
)
def test_bad_given_points_are_one_line_and_write_nothing(
    tiny, runs, tmp_path, monkeypatch, capsys, flags, message
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump([{"architecture": {}, "training": {}}]))
    assert main(["run", str(tiny), "--runs", str(runs), *flags]) == 2
    assert message in capsys.readouterr().err
    assert client_for(runs).get_experiment_by_name("tiny") is None
