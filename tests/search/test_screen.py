"""The screening evaluator: random filters, features, a ridge read-out chosen by leave-one-out."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from models import build_model
from search.campaign import space_data
from search.compile import CompiledSpace
from search.evaluate import evaluate
from search.screen import Ridge, extract, standardize
from search.settings import resolve
from tests.conftest import ROOT


def brute_force_loo(raw: torch.Tensor, y: torch.Tensor, lam: float, classes: int) -> torch.Tensor:
    """Leave each image out, center on the others, refit the ridge, score the one left out."""
    x = standardize(raw)[0].double()
    t = F.one_hot(y, classes).double()
    out = []
    for i in range(len(x)):
        keep = torch.arange(len(x)) != i
        a, mu, tm = x[keep], x[keep].mean(0), t[keep].mean(0)
        ac = a - mu
        w = torch.linalg.solve(
            ac.T @ ac + lam * torch.eye(x.shape[1], dtype=torch.float64), ac.T @ (t[keep] - tm)
        )
        out.append((x[i] - mu) @ w + tm)
    return torch.stack(out)


@pytest.mark.parametrize(("n", "d"), [(50, 300), (200, 30)])  # more features than images, and fewer
def test_leave_one_out_is_exact(n, d):
    g = torch.Generator().manual_seed(n)
    raw = torch.randn(n, d, generator=g) + 3.0
    y = torch.randint(0, 3, (n,), generator=g)
    ridge = Ridge(standardize(raw)[0], y, 3)
    for rel in (1e-2, 1.0, 30.0):
        lam = rel * ridge.scale
        assert torch.allclose(ridge.loo(lam), brute_force_loo(raw, y, lam, 3), atol=1e-5)


@pytest.mark.parametrize("n", [100, 300, 1000])
@pytest.mark.parametrize("ratio", [0.5, 5, 20])  # features per image: the primal, and the dual twice
def test_leave_one_out_of_random_labels_is_chance_even_when_the_fit_interpolates(n, ratio):
    """Labels that nothing predicts score chance under leave-one-out at every strength, even the
    weakest, where the fit of n images by 5n or 20n features interpolates (float32 features, as
    the screening extracts them)."""
    g = torch.Generator().manual_seed(n + int(ratio))
    x = standardize(torch.randn(n, int(n * ratio), generator=g) * 3.0 + 1.0)[0]
    assert x.dtype == torch.float32
    y = torch.randint(0, 10, (n,), generator=g)
    ridge = Ridge(x, y, 10)
    for rel in (1e-4, 1e-3, 1e-2, 1.0):
        acc = (ridge.loo(rel * ridge.scale).argmax(1) == y).double().mean().item()
        assert acc < 0.25, (rel, acc)  # chance is 0.1; a leak through the centering gives ~1.0


def test_weights_are_the_ridge_solution():
    g = torch.Generator().manual_seed(1)
    for n, d in ((40, 120), (120, 40)):
        x = standardize(torch.randn(n, d, generator=g))[0]
        y = torch.randint(0, 4, (n,), generator=g)
        ridge = Ridge(x, y, 4)
        x64, t = x.double(), ridge.t
        exact = torch.linalg.solve(x64.T @ x64 + 3.0 * torch.eye(d, dtype=torch.float64), x64.T @ t)
        assert torch.allclose(ridge.weights(3.0).double(), exact, atol=1e-4)


@pytest.fixture(scope="module")
def ht_l3_1st():
    """HT-L3-1st, pinned, screening 60 digits resized to 200x200 (45 to fit, 15 to score)."""
    settings = resolve(
        str(ROOT / "spaces" / "ht_l3_1st.yaml"),
        ["data.dataset=digits", "data.subset=60", "data.validation=15", "training.mode=screen"],
        runs=Path("runs"),
    )
    data = space_data(settings.space, settings.cache_dir, None)
    config = CompiledSpace(settings.space).sample(1, 0)[0]
    return config, data, settings.space.constraints


def test_screening_ht_l3_1st_twice_gives_the_same_features_and_score(ht_l3_1st):
    config, data, limits = ht_l3_1st
    arch = config["architecture"]
    features = [
        extract(build_model(arch, data.input_shape, data.n_classes, seed=7), data.x_train[:20])
        for _ in range(2)
    ]
    assert features[0].shape == (20, 25_600)
    assert torch.equal(features[0], features[1])
    other = extract(build_model(arch, data.input_shape, data.n_classes, seed=8), data.x_train[:20])
    assert not torch.equal(features[0], other)  # the filters are the trial's own random draw

    first = evaluate(config, data, seed=7, limits=limits)
    second = evaluate(config, data, seed=7, limits=limits)
    assert first.outcome == "ok", first.reason
    timing = ("train_seconds", "images_per_second")
    m = first.metrics()
    assert {k: v for k, v in m.items() if k not in timing} == {
        k: v for k, v in second.metrics().items() if k not in timing
    }
    assert m["features"] == 25_600 and m["epochs_done"] == 1
    assert {"val_acc", "val_loss", "train_seconds", "images_per_second", "params", "macs", "loo_acc"} <= set(
        m
    )
    assert m["val_acc"] > 0.3  # ten classes: far above chance from 45 images


def test_the_screened_weights_predict_as_the_screening_scored(ht_l3_1st):
    config, data, limits = ht_l3_1st
    result = evaluate(config, data, seed=3, limits=limits)
    model = build_model(config["architecture"], data.input_shape, data.n_classes, seed=0)
    model.load_state_dict(result.state_dict)
    model.eval()
    with torch.no_grad():
        acc = (model(data.x_val).argmax(1) == data.y_val).double().mean().item()
    assert acc == pytest.approx(result.val_acc)
