import copy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPACES = sorted((ROOT / "spaces").glob("*.yaml"))


def _layer(count, size, order, pool, norm_size, stretch):
    return {
        "filters": {
            "count": count,
            "size": size,
            "stride": 1,
            "init": "random_uniform_zm_un",
            "trainable": False,
        },
        "activation": {"kind": "clip", "min": 0.0, "max": None},
        "pool": {"kind": "lp", "order": order, "size": pool, "stride": 2},
        "norm": {
            "kind": "divisive",
            "size": norm_size,
            "remove_mean": False,
            "stretch": stretch,
            "threshold": 1.0,
        },
        "dropout": 0.0,
        "padding": "valid",
    }


HT_L3_1ST = {
    "input_norm": {
        "kind": "divisive",
        "size": 9,
        "remove_mean": False,
        "stretch": 10.0,
        "threshold": 1.0,
        "padding": "valid",
    },
    "layers": [
        _layer(64, 3, 1.0, 7, 5, 0.1),
        _layer(128, 5, 1.0, 5, 7, 1.0),
        _layer(256, 5, 10.0, 7, 3, 10.0),
    ],
    "head": {"pool": "flatten", "hidden": 0, "dropout": 0.0},
}


@pytest.fixture
def ht_l3_1st() -> dict:
    """SLM.md's HT-L3-1st as an architecture dict, written out by hand."""
    return copy.deepcopy(HT_L3_1ST)


def pytest_terminal_summary(terminalreporter):
    """The versions this run tested, last (shown with -q too): CI runs the suite on the newest
    releases and on the declared floors."""
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in ("torch", "mlflow", "hyperopt", "numpy", "pandas", "dask", "onnxruntime"):
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} missing")
    terminalreporter.write_line("archsearch tested with " + ", ".join(found))
