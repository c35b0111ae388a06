"""``archsearch bench layers``: runs with tiny settings and writes the JSON it documents.

Smoke tests only: the numbers are measured by running the benchmarks, never asserted here.
"""

from tests.conftest import ROOT
from tests.search.bench.common import bench, positive


def test_layers(tmp_path, capsys):
    r = bench(
        tmp_path, "layers", "--space", str(ROOT / "spaces/ht_l3_1st.yaml"), "--batch", "1", "--repeats", "1"
    )
    assert r["benchmark"] == "layers"
    assert positive(r["forward_images_per_s_contiguous"], r["forward_images_per_s_channels_last"])
    assert [row["layer"] for row in r["lnorm"]] == ["l0", "l1", "l2", "l3"]
    assert "bench layers" in capsys.readouterr().out
