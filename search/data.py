"""Datasets: where they come from, how they are verified, and how they become tensors.

Read top to bottom, in the order the data flows:

1. the registry: the files of the built-in datasets (``search.datasets``), mirrors, checksums;
2. finding and verifying files: a user's ``data_dir``, the cache under
   ``<runs>/data/NAME``, the system copy (Debian's ``dataset-fashion-mnist``),
   downloads (written to a temporary file, verified, then moved into the cache);
3. readers: IDX (MNIST, Fashion-MNIST), CIFAR-10 binary, scikit-learn's digits,
   a folder of images, an ``.npz`` file; each gives a :class:`Raw` set of arrays;
4. the split: a seeded subset and validation split that depends only on the
   dataset, ``subset``, ``validation`` and ``split_seed``; resizing; per-channel
   standardization by the training part;
5. :func:`load_data`, which chains them into a :class:`Data` of tensors.

Every problem a user can fix is a :class:`DataError`: one line saying what,
where and what to do.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import http.client
import json
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .datasets import CIFAR10_CLASSES, DATASETS, DIGIT_CLASSES, check_dataset_name
from .errors import UserError

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- registry


class DataError(UserError, ValueError):
    """A dataset that cannot be found, read or verified, or a split that cannot be made (one line)."""


@dataclass(frozen=True)
class FileSpec:
    """One published file of a dataset."""

    name: str  # on the mirror, in the cache and in a data_dir
    md5: str  # of the file as published (.gz, .tar.gz): checks downloads
    sha256: str | None = None  # of the decompressed content: checked for every source where known
    size: int | None = None  # decompressed bytes


@dataclass(frozen=True)
class Remote:
    """Where a dataset is published; a file's URL is ``url + name``."""

    url: str
    files: tuple[FileSpec, ...]
    system: bool = False  # an OS package may install the files under SYSTEM_DIR/<dataset>


# Where OS packages put datasets (Debian: dataset-fashion-mnist). Tests point it elsewhere.
SYSTEM_DIR = Path("/usr/share/datasets")
DOWNLOAD_TIMEOUT = 60.0  # seconds without data before a download gives up

REMOTES: dict[str, Remote] = {
    "fashion-mnist": Remote(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        (
            FileSpec(
                "train-images-idx3-ubyte.gz",
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                47_040_016,
            ),
            FileSpec(
                "train-labels-idx1-ubyte.gz",
                "25c81989df183df01b3e8a0aad5dffbe",
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                60_008,
            ),
            FileSpec(
                "t10k-images-idx3-ubyte.gz",
                "bef4ecab320f06d8554ea6380940ec79",
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                7_840_016,
            ),
            FileSpec(
                "t10k-labels-idx1-ubyte.gz",
                "bb300cfdad3c16e7a12a480ee83cd310",
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
                10_008,
            ),
        ),
        system=True,
    ),
    "mnist": Remote(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        (
            FileSpec("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            FileSpec("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
            FileSpec("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
            FileSpec("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
        ),
    ),
    "cifar10": Remote(
        "https://www.cs.toronto.edu/~kriz/",
        (FileSpec("cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530"),),
    ),
}

CIFAR_FOLDER = "cifar-10-batches-bin"  # inside the tarball
CIFAR_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR_TEST = "test_batch.bin"
CIFAR_RECORD = 1 + 3 * 32 * 32  # a label byte, then the image as 3 planes of 32x32

DIGITS_TEST_FRACTION = 0.2  # digits has no official test set; this fixed, seeded part is one
DIGITS_TEST_SEED = 0
HEAD_SEED = 0  # the fixed order of Data.head: the training images of a multi-fidelity rung

# ---------------------------------------------------------------- finding and verifying files


def _digest(data: bytes | Path, algorithm: str) -> str:
    h = hashlib.new(algorithm, usedforsecurity=False)
    if isinstance(data, Path):
        with data.open("rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
    else:
        h.update(data)
    return h.hexdigest()


def _fix(name: str, where: str) -> str:
    """What to do about a bad file, by where it lies."""
    if where == "cache":
        return f"delete it and run `archsearch data get {name}`"
    if where == "system":
        return f"reinstall the package (apt-get install --reinstall dataset-{name}) or pass --data-dir"
    return f"replace it with the file published at {REMOTES[name].url}"


def _content(name: str, path: Path, spec: FileSpec, where: str) -> bytes:
    """The decompressed bytes of a published .gz file, verified.

    The content's SHA-256 is checked where it is known (it holds for every
    source, re-compressed copies included); otherwise the .gz file's MD5.
    """
    try:
        packed = path.read_bytes()
    except OSError as e:
        raise DataError(f"{name}: cannot read {path} ({e.strerror or e}); {_fix(name, where)}") from None
    if spec.sha256 is None and (got := _digest(packed, "md5")) != spec.md5:
        raise DataError(
            f"{name}: {path} does not match the published file (MD5 {got}, expected {spec.md5}); "
            + _fix(name, where)
        )
    try:
        data = gzip.decompress(packed)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{name}: {path} is truncated or not gzip ({e}); {_fix(name, where)}") from None
    if spec.sha256 is not None:
        if spec.size is not None and len(data) != spec.size:
            raise DataError(
                f"{name}: {path} unpacks to {len(data):,} bytes, expected {spec.size:,}; " + _fix(name, where)
            )
        if (got := _digest(data, "sha256")) != spec.sha256:
            raise DataError(
                f"{name}: {path} does not match the published data (SHA-256 of its content {got[:16]}..., "
                f"expected {spec.sha256[:16]}...); " + _fix(name, where)
            )
    return data


def _check_new(path: Path, spec: FileSpec, published: bool) -> str | None:
    """What is wrong with a file about to enter the cache, or None.

    ``published``: it came from the official mirror, so its own MD5 must match;
    a copy from elsewhere may be re-compressed and is judged by its content.
    """
    if (published or spec.sha256 is None) and (got := _digest(path, "md5")) != spec.md5:
        return f"MD5 {got}, expected {spec.md5}"
    if spec.sha256 is not None:
        try:
            data = gzip.decompress(path.read_bytes())
        except (OSError, EOFError, zlib.error) as e:
            return f"truncated or not gzip: {e}"
        if spec.size is not None and len(data) != spec.size:
            return f"unpacks to {len(data):,} bytes, expected {spec.size:,}"
        if (got := _digest(data, "sha256")) != spec.sha256:
            return f"SHA-256 of its content {got[:16]}..., expected {spec.sha256[:16]}..."
    return None


class _Rejected(Exception):
    """A transferred file failed its check (the reason is the message)."""


def _transfer(url: str, dest: Path, check: Callable[[Path], str | None]) -> None:
    """Copy ``url`` to ``dest`` atomically: a temporary file beside it, checked, then renamed.

    On any failure the temporary file is removed, so ``dest`` is either the
    complete, verified file or absent. Raises :class:`_Rejected` when the
    check fails and OSError / HTTPException / ValueError when the transfer does.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response:
            shutil.copyfileobj(response, out, 1 << 20)
        problem = check(tmp)
        if problem:
            raise _Rejected(problem)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _reason(e: BaseException) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return str(e.reason)
    return str(e) or type(e).__name__


def _has_all(folder: Path | None, remote: Remote) -> bool:
    return folder is not None and all((folder / f.name).is_file() for f in remote.files)


def _system_dir(name: str) -> Path | None:
    return SYSTEM_DIR / name if REMOTES[name].system else None


def _cifar_folder(folder: Path) -> Path | None:
    """The extracted CIFAR-10 binary folder in or at ``folder``, if there is one."""
    for candidate in (folder, folder / CIFAR_FOLDER):
        if all((candidate / f).is_file() for f in (*CIFAR_TRAIN, CIFAR_TEST)):
            return candidate
    return None


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not empty, or gone: leave it
        folder.rmdir()


def _places(name: str, cache: Path) -> str:
    system = _system_dir(name)
    return f"{cache} or {system}" if system else str(cache)


def _locate(name: str, cache_dir: Path, data_dir: Path | None, download: bool) -> tuple[str, Path]:
    """Where the dataset's files are now, as (kind of place, folder); downloads what the cache lacks.

    The order: ``data_dir`` when given (and then only there), the cache, the
    system copy, a download into the cache.
    """
    remote = REMOTES[name]
    if data_dir is not None:
        data_dir = Path(data_dir)
        if _has_all(data_dir, remote):
            return "data_dir", data_dir
        if name == "cifar10" and (folder := _cifar_folder(data_dir)) is not None:
            return "data_dir", folder
        wanted = ", ".join(f.name for f in remote.files if not (data_dir / f.name).is_file())
        if name == "cifar10":
            wanted += f" (or its extracted {CIFAR_FOLDER} folder)"
        raise DataError(f"{name}: {data_dir} does not hold {wanted}; put them there or leave out --data-dir")
    cache = Path(cache_dir) / name
    if _has_all(cache, remote):
        return "cache", cache
    system = _system_dir(name)
    if _has_all(system, remote):
        return "system", system
    if not download:
        raise DataError(
            f"{name}: not in {_places(name, cache)} and downloads are off; run `archsearch data get {name}` "
            f"or download the files by hand into {cache}"
        )
    for spec in remote.files:
        dest = cache / spec.name
        if dest.is_file():
            continue  # verified when read
        url = remote.url + spec.name
        log.info("downloading %s", url)
        try:
            _transfer(url, dest, lambda p, spec=spec: _check_new(p, spec, published=True))
        except _Rejected as e:
            _remove_if_empty(cache)
            raise DataError(
                f"{name}: the file downloaded from {url} does not match its published checksum ({e}), "
                f"so it was not kept; try again later or download it by hand into {cache}"
            ) from None
        except (OSError, http.client.HTTPException, ValueError) as e:
            _remove_if_empty(cache)
            raise DataError(
                f"{name}: not in {_places(name, cache)} and the download from {url} failed ({_reason(e)}); "
                f"download the files by hand into {cache} or pass --data-dir"
            ) from None
    return "cache", cache


def fetch(name: str, *, cache_dir: Path, data_dir: Path | None = None) -> list[Path]:
    """Make a built-in dataset available and verified (``archsearch data get NAME``); return its files.

    With ``data_dir``, its files are verified and copied into the cache (an
    extracted CIFAR-10 folder is verified in place). Without, files already in
    the cache or the system copy are verified; missing ones are downloaded
    into ``cache_dir/NAME``. ``digits`` is built in: nothing to fetch, [].
    """
    if name == "digits":
        return []
    if name not in REMOTES:
        problem = check_dataset_name(name)
        if problem:
            raise DataError(problem)
        raise DataError(f"{name}: nothing to fetch, the path is read in place when a campaign starts")
    remote = REMOTES[name]
    where, folder = _locate(name, cache_dir, data_dir, download=data_dir is None)
    if where == "data_dir" and _has_all(folder, remote):
        cache = Path(cache_dir) / name
        for spec in remote.files:
            src = folder / spec.name
            try:
                _transfer(
                    src.resolve().as_uri(), cache / spec.name, lambda p, s=spec: _check_new(p, s, False)
                )
            except _Rejected as e:
                raise DataError(
                    f"{name}: {src} does not match the published file ({e}); {_fix(name, where)}"
                ) from None
            except OSError as e:
                raise DataError(f"{name}: cannot copy {src} into {cache} ({_reason(e)})") from None
        where, folder = "cache", cache
    _read_builtin(name, where, folder)  # reads and verifies everything
    if name == "cifar10" and where == "data_dir":
        return [folder / f for f in (*CIFAR_TRAIN, CIFAR_TEST)]
    return [folder / f.name for f in remote.files]


def dataset_table(cache_dir: Path) -> list[dict[str, Any]]:
    """One row per dataset kind for ``archsearch data list``: shape, classes, sizes, where it is now."""
    rows = []
    for info in DATASETS.values():
        if info.name in REMOTES:
            cache, system = Path(cache_dir) / info.name, _system_dir(info.name)
            if _has_all(cache, REMOTES[info.name]):
                available = f"cache: {cache}"
            elif _has_all(system, REMOTES[info.name]):
                available = f"system: {system}"
            else:
                available = f"not downloaded (archsearch data get {info.name})"
        else:
            available = "built in"
        shape = "x".join(map(str, info.input_shape))
        rows.append(
            dict(
                name=info.name,
                shape=shape,
                classes=info.n_classes,
                train=info.n_train,
                test=info.n_test,
                where=available,
                about=info.about,
            )
        )
    rows.append(
        dict(
            name="imagefolder:PATH",
            shape="any",
            classes="one per sub-folder",
            train="PATH/train/CLASS/* or PATH/CLASS/*",
            test="PATH/test/CLASS/* (optional)",
            where="read in place",
            about="your images, one sub-folder per class, resized to data.input_shape",
        )
    )
    rows.append(
        dict(
            name="npz:PATH",
            shape="any",
            classes="labels 0..K-1",
            train="x_train, y_train",
            test="x_test, y_test (optional)",
            where="read in place",
            about="numpy arrays NxHxW, NxHxWxC or NxCxHxW: uint8 (scaled by 1/255) or floats",
        )
    )
    return rows


# ---------------------------------------------------------------- readers


@dataclass
class Raw:
    """A dataset as read, before any split: images (N, C, H, W), uint8 (0..255) or float32 ([0, 1])."""

    x_train: np.ndarray
    y_train: np.ndarray  # int64
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    classes: tuple[str, ...]
    source: str
    checksums: tuple[str, ...]  # of the source files, for the fingerprint


def _parse_idx(name: str, data: bytes, path: Path, ndim: int, where: str) -> np.ndarray:
    """An IDX array of unsigned bytes with ``ndim`` dimensions (1: labels, 3: images)."""
    header = 4 + 4 * ndim
    magic = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if magic != 0x0800 + ndim or len(data) < header:
        raise DataError(f"{name}: {path} is not an IDX file of {ndim}-d unsigned bytes; {_fix(name, where)}")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    if len(data) != header + int(np.prod(dims)):
        raise DataError(
            f"{name}: {path} holds {len(data) - header:,} bytes for shape {dims}; {_fix(name, where)}"
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def _read_idx(name: str, where: str, folder: Path) -> Raw:
    """MNIST-style: four gzipped IDX files (train/t10k images and labels)."""
    specs = {f.name: f for f in REMOTES[name].files}
    arrays, checksums = [], []
    for stem, ndim in (
        ("train-images-idx3", 3),
        ("train-labels-idx1", 1),
        ("t10k-images-idx3", 3),
        ("t10k-labels-idx1", 1),
    ):
        spec = specs[f"{stem}-ubyte.gz"]
        path = folder / spec.name
        arrays.append(_parse_idx(name, _content(name, path, spec, where), path, ndim, where))
        checksums.append(spec.sha256 or spec.md5)
    x_train, y_train, x_test, y_test = arrays
    for x, y, split in ((x_train, y_train, "train"), (x_test, y_test, "t10k")):
        if len(x) != len(y):
            raise DataError(
                f"{name}: {folder} has {len(x):,} {split} images but {len(y):,} labels; {_fix(name, where)}"
            )
    return Raw(
        x_train[:, None],
        y_train.astype(np.int64),
        x_test[:, None],
        y_test.astype(np.int64),
        DATASETS[name].classes,
        str(folder),
        tuple(checksums),
    )


def _cifar_records(name: str, data: bytes, where_shown: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    if not data or len(data) % CIFAR_RECORD:
        raise DataError(
            f"{name}: {where_shown} is {len(data):,} bytes, not whole {CIFAR_RECORD}-byte records; "
            + _fix(name, where)
        )
    records = np.frombuffer(data, np.uint8).reshape(-1, CIFAR_RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() >= len(CIFAR10_CLASSES):
        raise DataError(f"{name}: {where_shown} has label {labels.max()}, expected 0..9; {_fix(name, where)}")
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def _read_cifar(name: str, where: str, folder: Path) -> Raw:
    """CIFAR-10's binary version: the verified tarball, read member by member, or its extracted folder."""
    spec = REMOTES[name].files[0]
    tarball = folder / spec.name
    wanted = (*CIFAR_TRAIN, CIFAR_TEST)
    blobs: dict[str, bytes] = {}
    if tarball.is_file():
        if (got := _digest(tarball, "md5")) != spec.md5:
            raise DataError(
                f"{name}: {tarball} does not match the published file (MD5 {got}, expected {spec.md5}); "
                + _fix(name, where)
            )
        try:
            with tarfile.open(tarball, "r|gz") as tar:  # read in place; nothing is extracted to disk
                for member in tar:
                    base = member.name.rpartition("/")[2]
                    if member.isfile() and member.name == f"{CIFAR_FOLDER}/{base}" and base in wanted:
                        blobs[base] = tar.extractfile(member).read()
        except (OSError, EOFError, tarfile.TarError, zlib.error) as e:
            raise DataError(f"{name}: {tarball} is damaged ({e}); {_fix(name, where)}") from None
        missing = [w for w in wanted if w not in blobs]
        if missing:
            raise DataError(f"{name}: {tarball} lacks {CIFAR_FOLDER}/{missing[0]}; {_fix(name, where)}")
        source, checksums = str(tarball), (spec.md5,)
    else:
        for w in wanted:
            try:
                blobs[w] = (folder / w).read_bytes()
            except OSError as e:
                raise DataError(f"{name}: cannot read {folder / w} ({e.strerror or e})") from None
        source, checksums = str(folder), tuple(_digest(blobs[w], "sha256") for w in wanted)
    train = [_cifar_records(name, blobs[w], str(folder / w), where) for w in CIFAR_TRAIN]
    x_test, y_test = _cifar_records(name, blobs[CIFAR_TEST], str(folder / CIFAR_TEST), where)
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return Raw(x_train, y_train, x_test, y_test, CIFAR10_CLASSES, source, checksums)


def _read_builtin(name: str, where: str, folder: Path) -> Raw:
    return _read_cifar(name, where, folder) if name == "cifar10" else _read_idx(name, where, folder)


def _read_digits() -> Raw:
    """scikit-learn's 8x8 digits (values 0..16), with a fixed seeded 20% as the test set."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[:, None]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(DIGITS_TEST_SEED).permutation(len(y))
    n_test = round(DIGITS_TEST_FRACTION * len(y))
    test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
    checksum = _digest(np.ascontiguousarray(digits.images).tobytes() + y.tobytes(), "sha256")
    return Raw(x[train], y[train], x[test], y[test], DIGIT_CLASSES, "scikit-learn load_digits", (checksum,))


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


def _image_files(folder: Path, classes: Sequence[str]) -> list[tuple[Path, int]]:
    files = []
    for label, cls in enumerate(classes):
        sub = folder / cls
        if sub.is_dir():
            files += [
                (p, label)
                for p in sorted(sub.iterdir())
                if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
            ]
    return files


def _read_imagefolder(name: str, root: Path, input_shape: tuple[int, int, int] | None) -> Raw:
    """One sub-folder per class (sorted names); ``root/train`` and ``root/test`` when present.

    Images are converted to L (1 channel) or RGB (3) and resized with Pillow to
    ``input_shape``; without one, they must all have the same size, and are
    grey when all of them are.
    """
    from PIL import Image, UnidentifiedImageError

    if not root.is_dir():
        raise DataError(
            f"{name}: {root} is not a folder; give a folder with one sub-folder of images per class"
        )
    train_dir = root / "train" if (root / "train").is_dir() else root
    test_dir = root / "test" if train_dir != root and (root / "test").is_dir() else None
    classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise DataError(
            f"{name}: {train_dir} has {len(classes)} class sub-folder(s); a classifier needs at least 2"
        )
    splits = {"train": _image_files(train_dir, classes)}
    if test_dir is not None:
        extra = sorted({p.name for p in test_dir.iterdir() if p.is_dir()} - set(classes))
        if extra:
            raise DataError(
                f"{name}: {test_dir / extra[0]} is a class with no training images in {train_dir}"
            )
        splits["test"] = _image_files(test_dir, classes)
    present = {label for _, label in splits["train"]}
    for label, cls in enumerate(classes):
        if label not in present:
            raise DataError(
                f"{name}: {train_dir / cls} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
            )

    def open_image(path: Path) -> Any:
        try:
            return Image.open(path)
        except (OSError, UnidentifiedImageError) as e:
            raise DataError(f"{name}: cannot read image {path} ({e}); remove or replace it") from None

    if input_shape is None:
        first_path = splits["train"][0][0]
        with open_image(first_path) as first:
            size = first.size
        gray = True
        for path, _ in (pair for files in splits.values() for pair in files):
            with open_image(path) as im:
                if im.size != size:
                    raise DataError(
                        f"{name}: {path} is {im.size[0]}x{im.size[1]}, {first_path} {size[0]}x{size[1]}; "
                        "set data.input_shape to resize them all"
                    )
                gray = gray and im.mode in GRAY_MODES
        c, h, w = (1 if gray else 3), size[1], size[0]
    else:
        c, h, w = input_shape
        if c not in (1, 3):
            raise DataError(f"{name}: input_shape {list(input_shape)} needs 1 or 3 channels for images")
    h_ = hashlib.sha256()
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split, files in splits.items():
        x = np.empty((len(files), c, h, w), np.uint8)
        for i, (path, _) in enumerate(files):
            with open_image(path) as im:
                try:
                    im = im.convert("L" if c == 1 else "RGB")
                    if im.size != (w, h):
                        im = im.resize((w, h), Image.Resampling.BILINEAR)
                    pixels = np.asarray(im)
                except OSError as e:
                    raise DataError(f"{name}: cannot read image {path} ({e}); remove or replace it") from None
            x[i] = pixels[None] if c == 1 else pixels.transpose(2, 0, 1)
            h_.update(f"{split}/{path.relative_to(root)}".encode())
            h_.update(pixels.tobytes())
        arrays[split] = x, np.array([label for _, label in files], np.int64)
    x_test, y_test = arrays.get("test", (None, None))
    if x_test is not None and not len(x_test):
        x_test = y_test = None
    return Raw(*arrays["train"], x_test, y_test, tuple(classes), str(root), (h_.hexdigest(),))


def _npz_images(name: str, path: Path, key: str, x: np.ndarray) -> np.ndarray:
    """NxHxW, NxHxWxC or NxCxHxW (C in 1, 3) as NxCxHxW; uint8 kept, floats as float32."""
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[3] in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    elif not (x.ndim == 4 and x.shape[1] in (1, 3)):
        raise DataError(
            f"{name}: {path}: {key} has shape {list(x.shape)}; expected N x H x W, N x H x W x C "
            "or N x C x H x W with C = 1 or 3"
        )
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise DataError(f"{name}: {path}: {key} has dtype {x.dtype}; use uint8 (0..255) or floats")
    if not np.isfinite(x).all():
        raise DataError(f"{name}: {path}: {key} holds NaN or infinite values")
    return np.ascontiguousarray(x, np.float32)


def _npz_labels(name: str, path: Path, key: str, y: np.ndarray, n: int) -> np.ndarray:
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(
            f"{name}: {path}: {key} must be a 1-d array of integers, got {y.dtype} {list(y.shape)}"
        )
    if len(y) != n:
        raise DataError(f"{name}: {path}: {key} has {len(y):,} labels for {n:,} images")
    if len(y) and y.min() < 0:
        raise DataError(f"{name}: {path}: {key} has label {y.min()}; labels must be 0..K-1")
    return y.astype(np.int64)


def _read_npz(name: str, path: Path) -> Raw:
    """Arrays x_train, y_train (required), x_test, y_test (optional), classes (optional names)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise DataError(f"{name}: {path} does not exist") from None
    except (OSError, ValueError, EOFError, AttributeError, TypeError, zipfile.BadZipFile) as e:
        raise DataError(
            f"{name}: {path} is not a readable .npz archive ({e}); save it with numpy.savez"
        ) from None
    missing = [k for k in ("x_train", "y_train") if k not in arrays]
    if ("x_test" in arrays) != ("y_test" in arrays):
        missing.append("y_test" if "x_test" in arrays else "x_test")
    if missing:
        raise DataError(
            f"{name}: {path} lacks {', '.join(missing)} (has {', '.join(sorted(arrays)) or 'nothing'}); "
            "it needs x_train, y_train and optionally x_test, y_test"
        )
    x_train = _npz_images(name, path, "x_train", arrays["x_train"])
    y_train = _npz_labels(name, path, "y_train", arrays["y_train"], len(x_train))
    x_test = y_test = None
    if "x_test" in arrays:
        x_test = _npz_images(name, path, "x_test", arrays["x_test"])
        y_test = _npz_labels(name, path, "y_test", arrays["y_test"], len(x_test))
        if x_test.shape[1:] != x_train.shape[1:]:
            raise DataError(
                f"{name}: {path}: x_test images are {list(x_test.shape[1:])}, "
                f"x_train's {list(x_train.shape[1:])}"
            )
    if not len(y_train):
        raise DataError(f"{name}: {path}: x_train is empty")
    n_classes = int(max(y_train.max(), y_test.max() if y_test is not None and len(y_test) else 0)) + 1
    if "classes" in arrays:
        classes = tuple(str(c) for c in np.asarray(arrays["classes"]).ravel())
        if len(classes) < n_classes:
            raise DataError(
                f"{name}: {path}: classes names {len(classes)} classes but labels go up to {n_classes - 1}"
            )
    else:
        classes = tuple(str(i) for i in range(n_classes))
    return Raw(x_train, y_train, x_test, y_test, classes, str(path), (_digest(path, "sha256"),))


# ---------------------------------------------------------------- split, resize, standardize


def split_indices(
    n: int, *, subset: int | None = None, validation: float | int = 0.1, split_seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted training and validation indices into a training set of ``n`` images.

    One seeded permutation: its first ``subset`` images are used (all when
    None), and the first ``validation`` of those (a fraction in (0, 1) or a
    count >= 1) are held out. Nothing else enters, so every campaign on a
    dataset with the same settings compares on the same split.
    """
    if subset is not None:
        if isinstance(subset, bool) or int(subset) != subset or subset < 1:
            raise DataError(f"data.subset: {subset!r} is not a positive number of images")
        if subset > n:
            raise DataError(
                f"data.subset: {subset:,} is more than the {n:,} training images; lower it or set it null"
            )
    if isinstance(split_seed, bool) or int(split_seed) != split_seed or split_seed < 0:
        raise DataError(f"data.split_seed: {split_seed!r} is not an integer >= 0")
    used = int(subset) if subset is not None else n
    if (
        isinstance(validation, bool)
        or not validation > 0
        or (validation >= 1 and int(validation) != validation)
    ):
        raise DataError(
            f"data.validation: {validation!r} is neither a fraction in (0, 1) nor a whole number of images"
        )
    n_val = max(1, round(validation * used)) if validation < 1 else int(validation)
    if n_val >= used:
        raise DataError(
            f"data.validation: holding out {n_val:,} of {used:,} training images leaves none to train on; "
            "lower data.validation or raise data.subset"
        )
    order = np.random.default_rng(int(split_seed)).permutation(n)[:used]
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def resize_images(x: torch.Tensor, input_shape: Sequence[int]) -> torch.Tensor:
    """Float images (N, C, H, W) in the shape (C', H', W'): channels 1->3 repeated, 3->1 by luminance;
    the size by bilinear interpolation (antialiased where it shrinks)."""
    c, h, w = (int(v) for v in input_shape)
    if (x.shape[1], c) == (3, 1):
        weights = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device)
        x = torch.einsum("nchw,c->nhw", x, weights)[:, None]
    elif x.shape[1] != c and (x.shape[1], c) != (1, 3):
        raise DataError(f"data.input_shape: cannot turn {x.shape[1]}-channel images into {c}-channel ones")
    if tuple(x.shape[2:]) != (h, w):
        shrink = h < x.shape[2] or w < x.shape[3]
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=shrink)
    if x.shape[1] != c:  # 1 -> 3, after resizing one plane
        x = x.expand(-1, c, -1, -1)
    return x.contiguous()


def _floats(x: np.ndarray) -> torch.Tensor:
    """uint8 images scaled to [0, 1], float images as given; always a fresh float32 tensor."""
    y = x.astype(np.float32)  # a copy, writable, whatever x was
    if x.dtype == np.uint8:
        y /= 255.0
    return torch.from_numpy(y)


def _fingerprint(checksums: Sequence[str], train: np.ndarray, val: np.ndarray) -> str:
    h = hashlib.sha256(json.dumps(list(checksums)).encode())
    h.update(train.astype("<i8").tobytes())
    h.update(b"|")
    h.update(val.astype("<i8").tobytes())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------- load_data


@dataclass(eq=False, repr=False)
class Data:
    """A dataset in memory: standardized float32 images (N, C, H, W) and int64 labels.

    The validation split is what trials are ranked on; the test set is kept
    for the final evaluation of a chosen model only.
    """

    name: str  # as given ("fashion-mnist", "npz:/x/y.npz", ...)
    classes: tuple[str, ...]
    input_shape: tuple[int, int, int]  # (C, H, W) of the tensors
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor | None
    y_test: torch.Tensor | None
    mean: tuple[float, ...]  # per channel, of the [0, 1]-scaled training pixels
    std: tuple[float, ...]
    source: str  # where it was read from (folder, file)
    fingerprint: str  # short hash of the split (train/val indices + source checksums)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def to(self, device: torch.device | str) -> Data:
        """A copy with every tensor on ``device``."""

        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device, non_blocking=True)

        tensors = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
        return dataclasses.replace(self, **{k: move(getattr(self, k)) for k in tensors})

    def head(self, n: int | None) -> Data:
        """The first ``n`` training images of one fixed random order (the same on every device and
        in every process, so that a smaller ``n`` gives a subset of a larger one's images); the
        validation and test images unchanged. ``n`` None, or all: this data."""
        if n is None or n >= len(self.y_train):
            return self
        order = torch.randperm(len(self.y_train), generator=torch.Generator().manual_seed(HEAD_SEED))
        order = order[:n].sort().values.to(self.x_train.device)
        return dataclasses.replace(self, x_train=self.x_train[order], y_train=self.y_train[order])

    def summary(self) -> dict[str, Any]:
        """Plain values for logging."""
        return {
            "name": self.name,
            "source": self.source,
            "n_train": len(self.y_train),
            "n_val": len(self.y_val),
            "n_test": 0 if self.y_test is None else len(self.y_test),
            "n_classes": self.n_classes,
            "input_shape": list(self.input_shape),
            "mean": [round(m, 6) for m in self.mean],
            "std": [round(s, 6) for s in self.std],
            "fingerprint": self.fingerprint,
        }

    def __repr__(self) -> str:
        s = self.summary()
        return (
            f"Data({s['name']!r}, {s['n_train']} train / {s['n_val']} val / {s['n_test']} test, "
            f"{'x'.join(map(str, self.input_shape))}, {self.n_classes} classes, {self.fingerprint})"
        )


def _read(
    dataset: str,
    input_shape: tuple[int, int, int] | None,
    cache_dir: Path,
    data_dir: Path | None,
    download: bool,
) -> Raw:
    problem = check_dataset_name(dataset)
    if problem:
        raise DataError(problem)
    if dataset == "digits":
        return _read_digits()
    if dataset in REMOTES:
        return _read_builtin(dataset, *_locate(dataset, cache_dir, data_dir, download))
    kind, _, path = dataset.partition(":")
    path = Path(path).expanduser()
    return _read_npz(dataset, path) if kind == "npz" else _read_imagefolder(dataset, path, input_shape)


def load_data(
    dataset: str,
    *,
    input_shape: Sequence[int] | None = None,
    subset: int | None = None,
    validation: float | int = 0.1,
    split_seed: int = 0,
    cache_dir: Path,
    data_dir: Path | None = None,
    download: bool = True,
) -> Data:
    """Read, verify, split, resize and standardize a dataset into memory.

    ``input_shape`` (C, H, W): what the images are converted to (None: as
    stored). ``subset``: training images used, drawn (seeded) before the
    validation split. ``validation``: a fraction in (0, 1) or a count of those
    held out. ``split_seed`` alone seeds both draws. ``cache_dir`` is
    ``<runs>/data``; ``data_dir`` a folder holding a built-in dataset's files;
    ``download``: whether a missing built-in dataset may be downloaded.
    """
    if input_shape is not None:
        input_shape = tuple(int(v) for v in input_shape)
        if len(input_shape) != 3 or min(input_shape) < 1:
            raise DataError(f"data.input_shape: {list(input_shape)} is not [C, H, W] of positive integers")
    raw = _read(dataset, input_shape, cache_dir, data_dir, download)
    train, val = split_indices(len(raw.y_train), subset=subset, validation=validation, split_seed=split_seed)
    shape = input_shape or tuple(int(v) for v in raw.x_train.shape[1:])

    def images(x: np.ndarray) -> torch.Tensor:
        return resize_images(_floats(x), shape)

    x_train, x_val = images(raw.x_train[train]), images(raw.x_train[val])
    x_test = images(raw.x_test) if raw.x_test is not None else None
    mean = x_train.mean(dim=(0, 2, 3)).double()
    std = x_train.std(dim=(0, 2, 3), correction=0).double()
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    scale = (1 / std).float().view(1, -1, 1, 1)
    shift = mean.float().view(1, -1, 1, 1)
    for x in (x_train, x_val, x_test):
        if x is not None:
            x.sub_(shift).mul_(scale)

    def labels(y: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(y, np.int64))

    return Data(
        name=dataset,
        classes=tuple(raw.classes),
        input_shape=shape,
        x_train=x_train,
        y_train=labels(raw.y_train[train]),
        x_val=x_val,
        y_val=labels(raw.y_train[val]),
        x_test=x_test,
        y_test=labels(raw.y_test) if raw.y_test is not None else None,
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        source=raw.source,
        fingerprint=_fingerprint(raw.checksums, train, val),
    )
