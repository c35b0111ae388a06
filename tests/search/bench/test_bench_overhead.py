"""``archsearch bench overhead``: the real campaign code path in seconds, and the JSON it documents.

Smoke tests only: the numbers are measured by running the benchmarks, never asserted here.
"""

from tests.search.bench.common import ENVIRONMENT, bench, positive


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
