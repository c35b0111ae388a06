"""Datasets the platform knows: their names, image shapes and class counts."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    input_shape: tuple[int, int, int]  # (C, H, W) of the stored images
    n_classes: int
    about: str


DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in (
        DatasetInfo("digits", (1, 8, 8), 10, "scikit-learn's 8x8 handwritten digits (1,797 images)"),
        DatasetInfo("fashion-mnist", (1, 28, 28), 10, "Zalando's 28x28 clothing images (60k + 10k)"),
        DatasetInfo("mnist", (1, 28, 28), 10, "28x28 handwritten digits (60k + 10k)"),
        DatasetInfo("cifar10", (3, 32, 32), 10, "32x32 colour images in 10 classes (50k + 10k)"),
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
