"""``archsearch bench evaluator``: the evaluator and the bare loop on tiny settings, and its JSON.

Smoke tests only: the numbers are measured by running the benchmarks, never asserted here.
"""

import pytest

from tests.conftest import ROOT
from tests.search.bench.common import ENVIRONMENT, bench, positive


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
