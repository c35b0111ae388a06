"""Every shipped space: sampled architectures build and train a step, or are invalid with a reason."""

import pytest
import torch

from models import InvalidArchitecture, build_model
from search.compile import CompiledSpace
from search.space import input_of, load_space
from tests.conftest import SPACES


def test_the_spaces_are_shipped():
    shipped = {"fg11_ht_l3", "ht_l3_1st", "pinto_cox", "quickstart", "fashion_cpu", "fashion_gpu"}
    assert {p.stem for p in SPACES} >= shipped


@pytest.mark.parametrize(
    "stem, first",
    [("pinto_cox", "plain-3conv"), ("fashion_cpu", "plain-3conv"), ("fashion_gpu", "wide-3conv")],
)
def test_the_spaces_for_real_campaigns_start_from_plain_convnets_they_contain(stem, first):
    space = load_space(next(p for p in SPACES if p.stem == stem))
    compiled = CompiledSpace(space)  # a point outside the space would raise here
    assert [source for _, _, source in compiled.points][0] == f"space point {first}"
    shape, classes = input_of(space, None, None)
    for _, config, _ in compiled.points:
        layers = config["architecture"]["layers"]
        assert [layer["pool"]["kind"] for layer in layers] == ["max"] * len(layers)
        assert build_model(config["architecture"], shape, classes, limits=space.constraints)


@pytest.mark.slow
@pytest.mark.parametrize("path", SPACES, ids=[p.stem for p in SPACES])
def test_sampled_architectures_run_forward_and_backward(path):
    space = load_space(path)
    shape, classes = input_of(space, None, None)
    compiled = CompiledSpace(space)
    configs = compiled.sample(20, seed=0)
    assert configs == compiled.sample(20, seed=0)  # same seed, same architectures
    built = 0
    for i, config in enumerate(configs):
        try:
            model = build_model(config["architecture"], shape, classes, limits=space.constraints, seed=i)
        except InvalidArchitecture as e:
            assert str(e), "an invalid architecture must say why"
            continue
        built += 1
        model.train()
        x = torch.randn(2, *shape)
        out = model(x)
        assert out.shape == (2, classes)
        assert torch.isfinite(out).all(), config
        torch.nn.functional.cross_entropy(out, torch.tensor([0, 1])).backward()
        for name, p in model.named_parameters():
            if p.requires_grad:
                assert p.grad is not None and torch.isfinite(p.grad).all(), (name, config)
                assert p.grad.abs().sum() > 0, (name, config)
    assert built >= 5, f"only {built} of 20 sampled architectures of {path.name} are valid"
