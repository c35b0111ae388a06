"""Run settings: --set overrides by key path, run flags, validation like a file, resume identity."""

import pytest

from search.settings import (
    apply_overrides,
    differences,
    flag_overrides,
    identity,
    resolve,
    tracking_uri,
)
from search.space import SpaceError

RAW = {
    "architecture": {
        "depth": 1,
        "layers": [{"filters": {"count": 8, "size": 3}, "pool": {"kind": "max", "size": 2}}],
    },
    "training": {"optimizer": "sgd"},
}


def test_overrides_set_nested_values_list_items_and_kind_shorthands():
    out = apply_overrides(
        RAW,
        [
            "training.epochs=1",
            "data.subset=2000",
            "architecture.layers[0].pool.size=3",
            "training.optimizer.momentum=0.5",  # `optimizer: sgd` becomes {kind: sgd, momentum: 0.5}
            "training.lr={loguniform: [1e-4, 1e-2]}",  # values are YAML
        ],
    )
    assert out["training"]["epochs"] == 1
    assert out["data"] == {"subset": 2000}
    assert out["architecture"]["layers"][0]["pool"] == {"kind": "max", "size": 3}
    assert out["training"]["optimizer"] == {"kind": "sgd", "momentum": 0.5}
    assert out["training"]["lr"] == {"loguniform": [1e-4, 1e-2]}
    assert RAW["training"] == {"optimizer": "sgd"}  # the input is left as it was


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("training.epochs", "expected KEY=VALUE"),
        ("=3", "expected KEY=VALUE"),
        ("training..lr=1", "bad key path"),
        ("architecture.layers[3].pool.size=3", "no such list item (the list has 1)"),
        ("architecture.depth.x=1", "architecture.depth is 1, not a mapping"),
        ("training.lr=[1, 2", "malformed YAML"),
    ],
)
def test_malformed_overrides_are_one_line_errors(item, message):
    with pytest.raises(SpaceError, match="--set") as info:
        apply_overrides(RAW, [item])
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_overrides_are_validated_like_the_file(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("architecture: {depth: 1, layers: {filters: {count: 4, size: 3}}}\n")
    with pytest.raises(SpaceError, match=r"s\.yaml with --set: training\.epochs: expected an integer >= 1"):
        resolve(str(path), ["training.epochs=0"])
    with pytest.raises(SpaceError, match=r"training\.nope: unknown key"):
        resolve(str(path), ["training.nope=1"])
    settings = resolve(str(path), ["training.epochs=3", "search.trials=7"], name="mine")
    assert settings.name == "mine"
    assert settings.space.search["trials"] == 7
    assert settings.raw["training"]["epochs"] == 3
    assert settings.space.path == str(path)


def test_a_bad_campaign_name_is_refused(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("architecture: {depth: 1, layers: {filters: {count: 4, size: 3}}}\n")
    with pytest.raises(Exception, match="campaign name 'a/b'"):
        resolve(str(path), name="a/b")


def test_flags_are_shorthands_for_space_keys():
    flags = {
        "trials": 5,
        "algo": "random",
        "seed": 3,
        "time_budget": 60.0,
        "dataset": "digits",
        "tpe_gamma": None,
    }
    assert flag_overrides(flags) == [
        "search.trials=5",
        "search.algo=random",
        "search.seed=3",
        "search.time_budget=60.0",
        "data.dataset=digits",
    ]


def test_identity_ignores_run_limits_only():
    a = {"name": "x", "search": {"trials": 5, "seed": 1, "time_budget": 10}, "training": {"epochs": 2}}
    b = {"name": "x", "search": {"trials": 9, "seed": 1}, "training": {"epochs": 2}}
    assert differences(identity(a), identity(b)) == []
    c = {"name": "x", "search": {"trials": 9, "seed": 2}, "training": {"epochs": 3}}
    assert differences(identity(a), identity(c)) == ["search.seed: 1 -> 2", "training.epochs: 2 -> 3"]


def test_tracking_uri_flag_then_environment_then_sqlite_under_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking:5000")
    assert tracking_uri("http://flag:5000", tmp_path) == "http://flag:5000"
    assert tracking_uri(None, tmp_path) == "http://tracking:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert tracking_uri(None, tmp_path) == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
