"""The datasets a space can name: the built-in ones (their shapes, classes and sizes) and the
kinds given by a path. ``search.data`` finds, verifies and loads them."""

from __future__ import annotations

from dataclasses import dataclass

DIGIT_CLASSES = tuple(str(i) for i in range(10))
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    input_shape: tuple[int, int, int]  # (C, H, W) of the stored images
    n_classes: int
    about: str
    classes: tuple[str, ...] = ()
    n_train: int = 0  # images in the official training set (before the validation split)
    n_test: int = 0


DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in (
        DatasetInfo(
            "digits",
            (1, 8, 8),
            10,
            "scikit-learn's 8x8 handwritten digits (1,797 images)",
            DIGIT_CLASSES,
            1438,
            359,
        ),
        DatasetInfo(
            "fashion-mnist",
            (1, 28, 28),
            10,
            "Zalando's 28x28 clothing images (60k + 10k)",
            FASHION_CLASSES,
            60_000,
            10_000,
        ),
        DatasetInfo(
            "mnist", (1, 28, 28), 10, "28x28 handwritten digits (60k + 10k)", DIGIT_CLASSES, 60_000, 10_000
        ),
        DatasetInfo(
            "cifar10",
            (3, 32, 32),
            10,
            "32x32 colour images in 10 classes (50k + 10k)",
            CIFAR10_CLASSES,
            50_000,
            10_000,
        ),
    )
}

# Datasets given by a path: "imagefolder:PATH" (one sub-folder per class), "npz:PATH".
PATH_KINDS = ("imagefolder", "npz")


def check_dataset_name(name: str) -> str | None:
    """None when ``name`` names a dataset, else what is wrong with it."""
    if name in DATASETS:
        return None
    kind, sep, path = name.partition(":")
    if sep and kind in PATH_KINDS:
        return None if path else f"{kind}: needs a path, as in {kind}:/data/images"
    known = ", ".join([*DATASETS, *(f"{k}:PATH" for k in PATH_KINDS)])
    return f"unknown dataset {name!r}; known: {known}"
