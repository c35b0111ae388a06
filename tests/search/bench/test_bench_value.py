"""``archsearch bench value``: both arms on digits in seconds, and its JSON.

Smoke tests only: the numbers are measured by running the benchmark, never asserted here.
"""

import pytest

from search.cli import main
from tests.conftest import ROOT
from tests.search.bench.common import ENVIRONMENT, bench, positive

DIGITS = ["--set", "data.dataset=digits", "--set", "data.subset=null", "--set", "data.validation=0.2"]


@pytest.mark.slow  # a campaign in a process of its own and the reference: 45 s
def test_value_runs_a_campaign_and_the_reference_at_one_budget(tmp_path, capsys):
    space = str(ROOT / "spaces/fashion_cpu.yaml")
    # two trials and two final epochs each, so that the campaign ends well within its 30 s on a
    # loaded machine (its budget counts from its command's start, imports and the store's set-up
    # included); the reference trains for all of them
    short = [*DIGITS, "--set", "search.trials=2", "--set", "search.final.epochs=2"]
    r = bench(tmp_path, "value", "--space", space, "--budget", "30", "--seeds", "1", *short)
    assert r["benchmark"] == "value" and set(r) >= ENVIRONMENT | {
        "budget_seconds",
        "gain",
        "goal",
        "meets_goal",
    }
    assert r["precision"] in ("bf16 autocast", "float32")  # a CPU's: the reference's and the campaign's
    (row,) = r["seeds"]
    ref, cam = row["reference"], row["campaign"]
    assert 0 < ref["test_acc"] <= 1 and ref["epochs"] >= 1 and ref["train_images"] > 0
    assert positive(ref["train_seconds"], ref["probe_step_seconds"], ref["wall_seconds"])
    # the campaign: its space's points first, a final run tested once
    assert 0 < cam["test_acc"] <= 1 and cam["trials"] >= 1 and cam["final_epochs"] >= 1
    assert positive(cam["search_seconds"], cam["final_seconds"], cam["wall_seconds"])
    # its test accuracy: its ensemble's when it trained two final models (the space averages them)
    finals = cam["final_models"]
    assert finals and all(0 < f["test_acc"] <= 1 for f in finals)
    assert cam["architecture"] == " + ".join(f["name"] for f in finals)
    assert r["gain"] == pytest.approx(cam["test_acc"] - ref["test_acc"])
    out = capsys.readouterr().out
    assert "median test_acc: campaign" in out and "reference" in out


def test_value_refuses_an_unknown_arm(capsys):
    assert main(["bench", "value", "--arms", "reference,other"]) == 2
    assert "--arms: expected reference and/or campaign" in capsys.readouterr().err


@pytest.mark.slow  # a campaign in a process of its own: 15 s
def test_a_campaign_without_a_final_run_fails_with_the_reason_it_gave(tmp_path, capsys):
    space = str(ROOT / "spaces/fashion_cpu.yaml")
    no_final = [*DIGITS, "--set", "search.trials=1", "--set", "search.final.top=0"]
    no_final += ["--set", "search.final.ensemble=false"]
    argv = ["bench", "value", "--space", space, "--arms", "campaign", "--budget", "30", "--seeds", "1"]
    assert main([*argv, *no_final, "--out", str(tmp_path / "bench.json")]) == 2
    err = capsys.readouterr().err
    assert "campaign value-0 logged no final run (it said: campaign value-0: 1 trial ended (1 ok)" in err
    assert not (tmp_path / "bench.json").exists()
