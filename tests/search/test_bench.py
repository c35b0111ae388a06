"""``archsearch bench``: each benchmark runs with tiny settings and writes the JSON it documents.

Smoke tests only: the numbers are measured by running the benchmarks, never asserted here.
"""

import json

import pytest

from search.cli import main
from tests.conftest import ROOT

ENVIRONMENT = {"device", "threads", "cpus", "load_average", "python", "torch", "hyperopt", "mlflow"}


def bench(tmp_path, *args):
    out = tmp_path / "bench.json"
    assert main(["bench", *args, "--out", str(out)]) == 0
    return json.loads(out.read_text())


def positive(*values):
    return all(isinstance(v, (int, float)) and v > 0 for v in values)


def test_layers(tmp_path, capsys):
    r = bench(
        tmp_path, "layers", "--space", str(ROOT / "spaces/ht_l3_1st.yaml"), "--batch", "1", "--repeats", "1"
    )
    assert r["benchmark"] == "layers"
    assert positive(r["forward_images_per_s_contiguous"], r["forward_images_per_s_channels_last"])
    assert [row["layer"] for row in r["lnorm"]] == ["l0", "l1", "l2", "l3"]
    assert "bench layers" in capsys.readouterr().out


def test_overhead(tmp_path, capsys):
    # digits as stored (8x8), one epoch: the real campaign code path in seconds
    r = bench(tmp_path, "overhead", "--trials", "2", "--epochs", "1", "--set", "data.input_shape=null")
    assert r["benchmark"] == "overhead"
    assert set(r) >= ENVIRONMENT | {"wall_seconds", "compute_seconds", "ratio", "loop_ratio", "goal"}
    assert r["trials"] == 2 and r["outcomes"] == {"ok": 2}
    assert positive(r["wall_seconds"], r["compute_seconds"], r["ratio"], r["loop_seconds"])
    assert positive(r["store_open_seconds"], r["one_off_seconds"]["data_load"], r["mlflow_calls_per_trial"])
    assert r["wall_seconds"] > r["loop_seconds"] > r["compute_seconds"]
    assert set(r["loop_breakdown_seconds"]) >= {"start_trial", "finish", "log_progress", "ask (suggest)"}
    assert r["mlflow_calls"]["create_run"] >= 3  # the campaign run and one per trial
    assert len(r["per_trial"]) == 2
    out = capsys.readouterr().out
    assert "wall / compute" in out and "MLflow client calls" in out


def test_evaluator(tmp_path, capsys):
    r = bench(
        tmp_path,
        "evaluator",
        "--space",
        str(ROOT / "spaces/quickstart.yaml"),
        "--dataset",
        "digits",
        "--epochs",
        "1",
        "--repeats",
        "1",
    )
    assert r["benchmark"] == "evaluator"
    assert set(r) >= ENVIRONMENT | {"ratio", "train_ratio", "goal", "bare_best", "recipe", "arch"}
    medians = r["median_seconds"]
    assert set(medians) == {"evaluator", "bare_contiguous", "bare_channels_last"}
    assert positive(*medians.values(), r["ratio"], r["train_ratio"], r["ratio_paired"])
    assert r["recipe"]["epochs"] == 1 and r["repeats"] == 1
    # same network, same seed, same data: the same training (a sanity check of the reference loop)
    assert r["val_acc"]["evaluator"] == pytest.approx(r["val_acc"]["bare_channels_last"], abs=0.05)
    assert "evaluator / faster bare loop" in capsys.readouterr().out


def test_suggest(tmp_path, capsys):
    r = bench(tmp_path, "suggest", "--sizes", "25,5", "--repeats", "2")
    assert r["benchmark"] == "suggest"
    assert set(r) >= ENVIRONMENT | {"space", "hyperparameters", "tpe", "repeats"}
    assert [s["history"] for s in r["sizes"]] == [5, 25]
    for s in r["sizes"]:
        assert positive(s["tpe_ms"], s["random_ms"], s["tell_ms"], s["fill_seconds"])
        assert len(s["tpe_ms_runs"]) == len(s["random_ms_runs"]) == 2
    assert "TPE ask" in capsys.readouterr().out


def test_bad_sizes_is_a_usage_error(tmp_path, capsys):
    assert main(["bench", "suggest", "--sizes", "ten", "--out", str(tmp_path / "x.json")]) == 2
    assert "--sizes" in capsys.readouterr().err
