"""The builder: dry shape pass, parameter and MAC counts, invalid architectures, seeding."""

import pytest
import torch

from models import ACTIVATIONS, INITS, NORMS, POOLS, InvalidArchitecture, Limits, build_model, plan_model
from search import schema


def test_ht_l3_1st_gives_25600_features(ht_l3_1st):
    plan = plan_model(ht_l3_1st, (1, 200, 200), 10)
    assert plan.output_shape == (256, 10, 10)
    assert plan.features == 25_600
    assert plan.layer_shapes() == {
        "input": (1, 200, 200),
        "l0": (1, 192, 192),
        "l1": (64, 88, 88),
        "l2": (128, 34, 34),
        "l3": (256, 10, 10),
    }


def test_plan_counts_match_the_built_model(ht_l3_1st):
    ht_l3_1st["layers"][2]["norm"] = {"kind": "batch"}  # 2 x 256 parameters, no crop
    ht_l3_1st["head"]["hidden"] = 32
    model = build_model(ht_l3_1st, (1, 200, 200), 7)
    assert model.plan.params == sum(p.numel() for p in model.parameters())
    # MACs of l2's filter bank: 128 filters x 64 channels x 5 x 5, at 84 x 84 positions
    l2 = next(s for s in model.plan.steps if s.name == "l2.filters")
    assert l2.macs == 128 * 64 * 5 * 5 * 84 * 84
    head = [s for s in model.plan.steps if s.name.startswith("head.")]
    assert [s.macs for s in head] == [0, 256 * 12 * 12 * 32, 32 * 7]


def test_plan_shapes_are_the_forward_shapes(ht_l3_1st):
    model = build_model(ht_l3_1st, (1, 200, 200), 10)
    x = torch.randn(2, 1, 200, 200)
    for name, stage in model.features.named_children():
        x = stage(x)
        assert tuple(x.shape[1:]) == model.plan.layer_shapes()[name]
    assert model.head(x).shape == (2, 10)


def test_a_map_shrinking_below_1x1_is_invalid_with_the_reason(ht_l3_1st):
    with pytest.raises(InvalidArchitecture, match=r"l3\.norm \(divisive\) shrinks the 2x2 feature map"):
        plan_model(ht_l3_1st, (1, 120, 120), 10)


@pytest.mark.parametrize(
    "limits,match",
    [
        (Limits(max_params=1_000_000), "1,280,586 parameters exceed max_params = 1,000,000"),
        (Limits(max_features=10_000), "25,600 features exceed max_features = 10,000"),
        (Limits(max_macs=10**9), "MACs per image exceed max_macs = 1,000,000,000"),
    ],
)
def test_limits_make_an_architecture_invalid(ht_l3_1st, limits, match):
    with pytest.raises(InvalidArchitecture, match=match):
        build_model(ht_l3_1st, (1, 200, 200), 10, limits=limits)
    plan_model(ht_l3_1st, (1, 200, 200), 10, Limits(10**7, 10**5, 10**10))  # within limits: fine


def test_weights_come_from_the_seed_and_leave_global_rng_alone(ht_l3_1st):
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = build_model(ht_l3_1st, (1, 200, 200), 10, seed=1).state_dict()
    b = build_model(ht_l3_1st, (1, 200, 200), 10, seed=1).state_dict()
    c = build_model(ht_l3_1st, (1, 200, 200), 10, seed=2).state_dict()
    assert torch.equal(torch.random.get_rng_state(), before)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["features.l1.0.weight"], c["features.l1.0.weight"])


def test_the_builder_leaves_every_generator_as_it_found_it(ht_l3_1st, monkeypatch):
    """Only the CPU generator draws the weights, and it is restored; a GPU's generator is never
    seeded (torch.manual_seed would seed it, or queue the seed for when CUDA starts), so a
    trial's batch order, augmentation and dropout on a GPU depend on its own seeding."""
    seeded = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda s: seeded.append(("all", s)))
    monkeypatch.setattr(torch.cuda, "manual_seed", lambda s: seeded.append(("one", s)))
    torch.manual_seed(5)  # (recorded too: the test's own seeding)
    seeded.clear()
    before = torch.random.get_rng_state()
    build_model(ht_l3_1st, (1, 200, 200), 10, seed=1)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert seeded == []


def test_random_uniform_zm_un_filters_are_zero_mean_unit_norm_and_frozen(ht_l3_1st):
    model = build_model(ht_l3_1st, (1, 200, 200), 10)
    w = model.features.l2[0].weight  # (128, 64, 5, 5)
    assert not w.requires_grad
    flat = w.detach().flatten(1)
    torch.testing.assert_close(flat.mean(1), torch.zeros(128), atol=1e-6, rtol=0)
    torch.testing.assert_close(flat.norm(dim=1), torch.ones(128))
    assert [n for n, p in model.named_parameters() if p.requires_grad] == [
        "head.body.2.weight",
        "head.body.2.bias",
    ]


def test_unknown_kind_lists_the_valid_ones(ht_l3_1st):
    ht_l3_1st["layers"][1]["pool"] = {"kind": "median", "size": 3}
    with pytest.raises(ValueError, match="unknown pooling 'median'; valid: avg, lp, max, none"):
        plan_model(ht_l3_1st, (1, 200, 200), 10)


def test_every_op_of_every_table_builds_runs_and_keeps_its_shape_rule():
    x = torch.randn(2, 4, 9, 9)
    blocks = [
        (ACTIVATIONS, "activation", schema.ACTIVATION),
        (POOLS, "pool", schema.POOL),
        (NORMS, "norm", schema.NORM),
    ]
    for table, _, spec in blocks:
        for kind, cls in table.items():
            params = {k: f.default for k, f in spec.kinds[kind].items()}
            params = {k: (3 if v is schema.REQUIRED else v) for k, v in params.items()}
            for padding in ("valid", "same"):
                out = cls(4, padding, **params)(x)
                assert tuple(out.shape[1:]) == cls.out_shape((4, 9, 9), padding, **params), (kind, padding)
                assert torch.isfinite(out).all()


def test_schema_kinds_are_the_model_tables():
    assert set(schema.ACTIVATION.kinds) == set(ACTIVATIONS)
    assert set(schema.POOL.kinds) == set(POOLS)
    assert set(schema.NORM.kinds) == set(NORMS)
    assert set(schema.INPUT_NORM.kinds) <= set(NORMS)
    assert set(schema.FILTERS.fields["init"].options) == set(INITS)
