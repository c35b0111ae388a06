"""``archsearch bench scale``: a campaign of the synthetic objective grown to two tiny sizes, every
figure there, and the growth fit.

Smoke tests only: the numbers are measured by running the benchmarks, never asserted here.
"""

import os

import pytest

from search.bench.scale import AFTER_KILL, PACED, grown, growth
from tests.search.bench.common import ENVIRONMENT, bench, positive


@pytest.mark.slow
def test_scale(tmp_path, capsys):
    r = bench(tmp_path, "scale", "--sizes", "60,5", "--repeats", "1")
    assert r["benchmark"] == "scale" and set(r) >= ENVIRONMENT | {
        "objective",
        "growth",
        "bare_start_seconds",
        "bare_read_start_seconds",
    }
    assert "synthetic" in r["objective"]
    assert [s["history"] for s in r["sizes"]] == [5, 60]
    assert [s["trials_after"] for s in r["sizes"]] == [5 + PACED + AFTER_KILL, 60 + PACED + AFTER_KILL]
    assert [s["added"] for s in r["sizes"]] == [5, 60 - 5 - PACED - AFTER_KILL]
    for i, s in enumerate(r["sizes"]):
        assert positive(s["platform_ms_per_trial"], s["random_ask_ms"], s["tell_ms"], s["critical_path_ms"])
        assert positive(s["mlflow_ms_per_trial"], s["mlflow_calls_per_trial"])
        # one run per trial added, and the campaign's own at first
        assert s["mlflow_calls"]["create_run"] == s["added"] + (i == 0)
        assert positive(s["tpe"]["ask_ms"], s["resume"]["first_trial_seconds"], s["sqlite_mb"])
        assert positive(*s["commands"].values()) and len(s["commands"]) == 6
        assert s["commands"]["status_command"] > s["commands"]["status"]  # MLflow's imports too
        ui = s["ui"]  # measured where Chromium can be driven, as under CI=true
        if "skipped" not in ui or os.environ.get("CI") == "true":
            seconds = ("campaign_row_seconds", "trials_expanded_seconds", "best_trials_seconds")
            assert positive(*(ui[k] for k in seconds))
            assert ui["rows_shown"] > 1
    assert set(r["growth"]) >= {"platform ms/trial", "TPE ask ms", "resume s", "status s"}
    assert "growth" in capsys.readouterr().out


def test_the_sizes_leave_room_for_a_killed_driver_and_growth_is_the_log_log_slope():
    assert grown([5, 10, 200]) == [5, 5 + PACED + AFTER_KILL + 2, 200]
    rows = [
        {
            "history": n,
            "platform_ms_per_trial": 10.0,  # flat
            "critical_path_ms": 5.0,
            "random_ask_ms": 1.0,
            "tell_ms": 0.1,
            "tracking_ms_per_trial": 45.0,
            "mlflow_ms_per_trial": 40.0,
            "tpe": {"ask_ms": n / 10, "rebuild_ms": n * n},  # linear, quadratic
            "resume": {"first_trial_seconds": 3.0},
            "commands": {"status": 1.0, "leaderboard_top20": 1.0, "report": 1.0, "warm_start_top5": 0.0},
            "sqlite_mb": 1.0,
            "ui": {"skipped": "no browser"},
        }
        for n in (100, 1000, 10000)
    ]
    fitted = growth(rows)
    assert fitted["platform ms/trial"] == pytest.approx(0.0, abs=1e-12)
    assert fitted["TPE ask ms"] == pytest.approx(1.0)
    assert fitted["history rebuild ms"] == pytest.approx(2.0)
    assert fitted["warm start s"] is None  # not above zero: no exponent
    assert fitted["UI best trials s"] is None  # not measured
    assert growth(rows[:1])["TPE ask ms"] is None
