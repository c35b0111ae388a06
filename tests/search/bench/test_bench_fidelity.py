"""``archsearch bench fidelity``: a few architectures on digits at every fidelity, and its JSON.

Smoke tests only: the correlations are measured by running the benchmark, never asserted here.
"""

from search.cli import main
from tests.conftest import ROOT
from tests.search.bench.common import ENVIRONMENT, bench

TINY = ["--archs", "4", "--images", "600", "--validation", "300", "--epochs", "2", "--cheap", "200:1"]


def test_fidelity_scores_each_architecture_cheaply_and_at_the_reference(tmp_path, capsys):
    space = str(ROOT / "spaces/quickstart.yaml")
    r = bench(tmp_path, "fidelity", "--space", space, "--set", "data.dataset=digits", *TINY)
    assert r["benchmark"] == "fidelity" and set(r) >= ENVIRONMENT | {"correlations", "fidelities", "goal"}
    assert r["fidelities"] == {
        "reference": {"images": 600, "epochs": 2},
        "200:1": {"images": 200, "epochs": 1},
    }
    assert len(r["archs"]) == 4
    for row in r["archs"]:
        for key in ("reference", "200:1", "screen"):
            assert row[key]["outcome"] == "ok" and 0 <= row[key]["val_acc"] <= 1 and row[key]["seconds"] > 0
    c = r["correlations"]
    assert c["reference"]["spearman"] == 1.0 and c["reference"]["rank_of_reference_best"] == 1
    for key in ("200:1", "screen"):
        assert c[key]["archs"] == 4 and -1 <= c[key]["spearman"] <= 1 and c[key]["cost_vs_reference"] > 0
    out = capsys.readouterr().out
    assert "screened (random filters, ridge)" in out and "[4/4]" in out


def test_fidelity_refuses_a_bad_cheap_fidelity(capsys):
    assert main(["bench", "fidelity", "--cheap", "2000"]) == 2
    assert "--cheap: '2000' is not IMAGES:EPOCHS" in capsys.readouterr().err
