"""Compiling spaces into hyperopt: labels, decoding to plain values, JSON and hashes."""

import json

import numpy as np
import pytest
from hyperopt import JOB_STATE_DONE, STATUS_OK, Domain, Trials, rand, tpe

from search.compile import CompiledSpace, arch_hash, arch_name, flatten, to_json
from search.space import load_space
from tests.conftest import HT_L3_1ST, ROOT


@pytest.fixture(scope="module")
def fg11():
    return CompiledSpace(load_space(ROOT / "spaces" / "fg11_ht_l3.yaml"))


def ask_tell(compiled, algo, n, seed=0):
    """Configs proposed by hyperopt's own suggest, decoded from the trial docs."""
    trials, domain, rng = Trials(), Domain(lambda _: 0.0, compiled.expr), np.random.default_rng(seed)
    configs = []
    for _ in range(n):
        ids = trials.new_trial_ids(1)
        trials.insert_trial_docs(algo.suggest(ids, domain, trials, rng.integers(2**31)))
        trials.refresh()
        doc = trials.trials[-1]
        config = compiled.decode(doc["misc"]["vals"])
        configs.append(config)
        doc["state"] = JOB_STATE_DONE
        doc["result"] = {
            "loss": float(config["architecture"]["layers"][0]["filters"]["count"]),
            "status": STATUS_OK,
        }
        trials.refresh()
    return configs


def test_labels_are_stable_dotted_paths(fg11):
    labels = set(fg11.labels)
    assert {"depth", "l0.norm.size", "l1.filters.count", "l2.pool.order", "l3.norm.threshold"} <= labels
    assert all("." in label for label in labels - {"depth"})
    assert fg11.labels == CompiledSpace(load_space(ROOT / "spaces" / "fg11_ht_l3.yaml")).labels


def test_same_seed_same_samples(fg11):
    assert fg11.sample(5, seed=3) == fg11.sample(5, seed=3)
    assert fg11.sample(5, seed=3) != fg11.sample(5, seed=4)


@pytest.mark.parametrize("algo", [tpe, rand], ids=["tpe", "random"])
def test_decoded_suggestions_are_values_never_indices(fg11, algo):
    counts = {1: {16, 32, 64}, 2: {16, 32, 64, 128}, 3: {16, 32, 64, 128, 256}}
    for config in ask_tell(fg11, algo, 30):
        layers = config["architecture"]["layers"]
        assert len(layers) in (2, 3)
        for i, layer in enumerate(layers, start=1):
            assert layer["filters"]["count"] in counts[i]
            assert layer["pool"]["order"] in (1.0, 2.0, 10.0)
            assert layer["activation"]["min"] in (None, 0.0)
            assert layer["norm"]["stretch"] in (0.1, 1.0, 10.0)
        assert json.loads(to_json(config)) == config


def test_conflicting_fields_of_block_options_get_the_kind_in_their_label(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        """
architecture:
  depth: 1
  layers:
    filters: {count: 8, size: 3}
    pool:
      choice:
        - {kind: lp, order: {choice: [1, 2, {uniform: [1, 10]}]}, size: {choice: [2, 3]}}
        - {kind: avg, size: {choice: [4, 5]}}
        - {kind: max, size: {choice: [2, 3]}}
"""
    )
    compiled = CompiledSpace(load_space(path))
    assert {"l1.pool", "l1.pool.order", "l1.pool.order@2", "l1.pool.size", "l1.pool.size@avg"} <= set(
        compiled.labels
    )
    assert "l1.pool.size@max" not in compiled.labels  # same definition as lp's: one label
    seen = {}
    for config in compiled.sample(200, seed=0):
        pool = config["architecture"]["layers"][0]["pool"]
        seen.setdefault(pool["kind"], set()).add(pool["size"])
    assert seen == {"lp": {2, 3}, "avg": {4, 5}, "max": {2, 3}}


def test_integer_ranges_cover_both_ends_and_log_ranges_use_natural_units(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        "architecture: {depth: 1, layers: {filters: {count: {int: [4, 7]}, size: 3}}}\n"
        "training: {lr: {loguniform: [1e-4, 1e-2]}, epochs: {qloguniform: [2, 50, 2]}}\n"
    )
    configs = CompiledSpace(load_space(path)).sample(300, seed=1)
    counts = [c["architecture"]["layers"][0]["filters"]["count"] for c in configs]
    assert set(counts) == {4, 5, 6, 7} and all(type(c) is int for c in counts)
    lrs = [c["training"]["lr"] for c in configs]
    assert 1e-4 <= min(lrs) < 3e-4 and 3e-3 < max(lrs) <= 1e-2
    assert all(type(c["training"]["epochs"]) is int and c["training"]["epochs"] % 2 == 0 for c in configs)


def test_json_is_canonical_and_hash_is_stable():
    reordered = json.loads(json.dumps(HT_L3_1ST, sort_keys=False))
    reordered = dict(reversed(list(reordered.items())))
    assert to_json(reordered) == to_json(HT_L3_1ST)
    assert arch_hash(reordered) == arch_hash(HT_L3_1ST)
    assert len(arch_hash(HT_L3_1ST)) == 10
    changed = json.loads(to_json(HT_L3_1ST))
    changed["layers"][2]["pool"]["order"] = 2.0
    assert arch_hash(changed) != arch_hash(HT_L3_1ST)


def test_pinned_space_decodes_to_ht_l3_1st():
    compiled = CompiledSpace(load_space(ROOT / "spaces" / "ht_l3_1st.yaml"))
    assert compiled.labels == []
    (config,) = compiled.sample(1)
    assert config["architecture"] == HT_L3_1ST
    assert arch_name(config["architecture"]) == "l3 f64-128-256 k3-5-5 p1/1/10"


def test_flatten_gives_one_scalar_per_dotted_name(fg11):
    config = fg11.sample(1, seed=2)[0]
    flat = flatten(config)
    assert flat["depth"] == len(config["architecture"]["layers"])
    assert flat["l1.pool.order"] == config["architecture"]["layers"][0]["pool"]["order"]
    assert flat["l0.norm.size"] == config["architecture"]["input_norm"]["size"]
    assert flat["training.lr"] == config["training"]["lr"]
    assert all(not isinstance(v, (dict, list)) for v in flat.values())
