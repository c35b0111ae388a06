"""``archsearch bench suggest``: suggestion times on tiny histories, and a usage error.

Smoke tests only: the numbers are measured by running the benchmarks, never asserted here.
"""

from search.cli import main
from tests.search.bench.common import ENVIRONMENT, bench, positive


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
