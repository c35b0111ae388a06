"""The datasets a space can name: the built-in ones and those given by a path."""

import pytest

from search.datasets import DATASETS, check_dataset_name


@pytest.mark.parametrize(
    "name", ["digits", "fashion-mnist", "mnist", "cifar10", "npz:/d/x.npz", "imagefolder:d"]
)
def test_known_names_pass(name):
    assert check_dataset_name(name) is None


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("fashion_mnist", "unknown dataset 'fashion_mnist'; known: digits, fashion-mnist, mnist, cifar10, "),
        ("npz:", "npz: needs a path, as in npz:/data/images"),
        ("zip:/x", "unknown dataset 'zip:/x'"),
    ],
)
def test_other_names_say_what_is_known(name, problem):
    assert check_dataset_name(name).startswith(problem)


def test_the_built_in_datasets_know_their_shape_and_classes():
    assert DATASETS["fashion-mnist"].input_shape == (1, 28, 28) and DATASETS["cifar10"].input_shape == (
        3,
        32,
        32,
    )
    assert all(len(d.classes) == d.n_classes for d in DATASETS.values())
