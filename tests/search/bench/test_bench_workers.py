"""``archsearch bench workers``: two real campaigns of two trials, the GPU path with its campaigns stubbed.

Smoke tests only: the numbers are measured by running the benchmarks, never asserted here.
"""

import pytest
import torch

from search.bench import workers as workers_module
from search.cli import main
from tests.conftest import ROOT
from tests.search.bench.common import ENVIRONMENT, bench, positive


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


def test_workers_on_gpu_reports_packing_and_utilization(tmp_path, monkeypatch, capsys):
    # the --device cuda path without a GPU: campaigns stubbed, nvidia-smi absent (n/a)
    monkeypatch.setattr(workers_module, "device_of", lambda name: torch.device("cpu"))
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

    monkeypatch.setattr(workers_module, "timed_campaign", campaign)
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
