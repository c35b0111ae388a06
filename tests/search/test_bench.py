"""``archsearch bench``: each benchmark runs with tiny settings and writes the JSON it documents.

Smoke tests only: the numbers are measured by running the benchmarks, never asserted here.
"""

import json
import os
import time

import pytest
import torch

from search import bench as bench_module
from search.bench import GpuSampler, parse_gpu_query
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


@pytest.mark.slow
def test_workers(tmp_path, tiny, capsys):
    # two real campaigns of two one-epoch trials on digits as stored: one worker, then two
    r = bench(
        tmp_path, "workers", "--space", str(tiny), "--trials", "2", "--epochs", "1", "--workers", "1", "2"
    )
    assert r["benchmark"] == "workers" and r["mode"] == "cpu workers"
    assert set(r) >= ENVIRONMENT | {"space", "overrides", "campaigns", "efficiency_goal", "threads_per_trial"}
    assert "search.algo=random" in r["overrides"]  # the same trials in every run
    rows = r["campaigns"]
    assert [c["workers"] for c in rows] == [1, 2]
    for c in rows:
        assert c["trials"] == 2 and c["outcomes"] == {"ok": 2} and c["threads_per_trial"] == 1
        assert positive(c["trials_per_hour"], c["wall_seconds"], c["trial_seconds_mean"], c["speedup"])
        assert c["trials_per_hour"] == pytest.approx(3600 * 2 / c["wall_seconds"])
        assert [t["trial"] for t in sorted(c["per_trial"], key=lambda t: t["trial"])] == [0, 1]
    assert [t["name"] for t in rows[0]["per_trial"]] == [t["name"] for t in rows[1]["per_trial"]]
    assert rows[0]["speedup"] == 1.0 and rows[0]["goal"] is None
    assert rows[1]["speedup"] == pytest.approx(rows[1]["trials_per_hour"] / rows[0]["trials_per_hour"])
    # the speedup, taken apart: trials at once x busy share x trial speed
    parts = 2 * rows[1]["busy_ratio"] * rows[1]["trial_speed_ratio"]
    assert rows[1]["speedup"] == pytest.approx(parts)
    assert positive(rows[1]["train_time_ratio_median"])
    if r["cores"] >= 2:
        assert rows[1]["goal"] == pytest.approx(1.7) and rows[1]["goal_met"] in (True, False)
    out = capsys.readouterr().out
    assert "trials/hour" in out and "speedup" in out


def test_workers_options_belong_to_a_device(tmp_path, capsys):
    out = str(tmp_path / "x.json")
    assert main(["bench", "workers", "--trials-per-gpu", "2", "--out", out]) == 2
    assert "--trials-per-gpu" in capsys.readouterr().err


def test_parse_gpu_query():
    text = "37, 1024\n 100 , 80000 \n"
    assert parse_gpu_query(text) == [(37.0, 1024.0), (100.0, 80000.0)]
    assert parse_gpu_query("[N/A], 512\n") == [(None, 512.0)]
    # a header, nvidia-smi's complaint, blank lines: not samples
    junk = "utilization.gpu [%], memory.used [MiB]\nNVIDIA-SMI has failed because it couldn't communicate\n\n"
    assert parse_gpu_query(junk) == []


def fake_nvidia_smi(folder, script):
    path = folder / "nvidia-smi"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)


def test_gpu_sampler_without_nvidia_smi(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no nvidia-smi
    with GpuSampler(every=0.01) as sampler:
        time.sleep(0.05)
    assert sampler.samples == [] and "not found" in sampler.error
    summary = sampler.summary()
    assert summary["samples"] == 0
    assert summary["utilization_mean"] is summary["utilization_max"] is summary["memory_peak_mib"] is None


def test_gpu_sampler_samples_nvidia_smi(tmp_path, monkeypatch):
    fake_nvidia_smi(tmp_path, 'echo "42, 2048"\necho "7, 10"\n')  # two GPUs; -i picks one
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    sampler = GpuSampler(gpu="0", every=0.02)
    assert sampler.command[-2:] == ["-i", "0"]
    with sampler:
        deadline = time.monotonic() + 10
        while len(sampler.samples) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    n = len(sampler.samples)
    time.sleep(0.1)
    assert len(sampler.samples) == n >= 3  # stopped with the block
    assert {(u, m) for _, u, m in sampler.samples} == {(42.0, 2048.0)}
    summary = sampler.summary()
    assert summary["utilization_mean"] == summary["utilization_max"] == 42.0
    assert summary["memory_peak_mib"] == 2048.0 and summary["sampler_error"] is None


def test_gpu_sampler_stops_when_nvidia_smi_fails(tmp_path, monkeypatch):
    fake_nvidia_smi(tmp_path, 'echo "NVIDIA-SMI has failed because it couldn\'t communicate"\nexit 9\n')
    monkeypatch.setenv("PATH", str(tmp_path))
    with GpuSampler(every=0.01) as sampler:
        time.sleep(0.05)
    assert sampler.samples == []
    assert "code 9" in sampler.error and "NVIDIA-SMI has failed" in sampler.error


def test_workers_on_gpu_reports_packing_and_utilization(tmp_path, monkeypatch, capsys):
    # the --device cuda path without a GPU: campaigns stubbed, nvidia-smi absent (n/a)
    monkeypatch.setattr(bench_module, "_device", lambda name: torch.device("cpu"))
    monkeypatch.setenv("PATH", str(tmp_path))
    calls = []

    def campaign(space_path, overrides, name, sampler=None, **run):
        calls.append(run)
        with sampler:
            pass
        k = run["trials_per_gpu"]
        wall = 100.0 / k
        return {
            "trials": 4,
            "outcomes": {"ok": 4},
            "wall_seconds": wall,
            "trials_per_hour": 3600 * 4 / wall,
            "trial_seconds_mean": 20.0,
            "trial_seconds_sum": 80.0,
            "first_trials_outside_training_seconds": 5.0,
            "other_trials_outside_training_seconds": 0.1,
            "per_trial": [{"trial": i, "train_seconds": 19.0} for i in range(4)],
        }

    monkeypatch.setattr(bench_module, "_timed_campaign", campaign)
    space = str(ROOT / "spaces/pinto_cox.yaml")
    r = bench(tmp_path, "workers", "--device", "cuda", "--space", space, "--trials", "4")
    assert [(c["device"], c["workers"], c["trials_per_gpu"]) for c in calls] == [
        ("cuda", k, k) for k in (1, 2, 4)
    ]
    assert r["mode"] == "gpu packing" and "search.trials=4" in r["overrides"]
    assert [c["trials_per_gpu"] for c in r["campaigns"]] == [1, 2, 4]
    assert [c["speedup"] for c in r["campaigns"]] == pytest.approx([1.0, 2.0, 4.0])
    assert all(c["gpu_usage"]["utilization_mean"] is None for c in r["campaigns"])
    assert [c["busy"] for c in r["campaigns"]] == pytest.approx([0.8, 0.8, 0.8])
    out = capsys.readouterr().out
    assert "GPU util mean" in out and "n/a" in out and "not found" in out
