"""The dataset layer: sources, verification, atomic cache writes, the seeded split, resizing, standardizing.

Everything runs offline: downloads are served by a local http.server on
127.0.0.1, and the Debian copy of Fashion-MNIST is used where it is installed.
"""

import dataclasses
import functools
import gzip
import hashlib
import http.server
import io
import json
import shutil
import socket
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from search import data as D
from search.data import DataError, dataset_table, fetch, load_data, resize_images, split_indices
from search.errors import UserError

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
needs_debian_fashion = pytest.mark.skipif(
    not all((DEBIAN_FASHION / f.name).is_file() for f in D.REMOTES["fashion-mnist"].files),
    reason="Debian package dataset-fashion-mnist is not installed (/usr/share/datasets/fashion-mnist)",
)


def raises(match: str):
    """pytest.raises for a DataError whose one-line message contains ``match``."""
    return pytest.raises(DataError, match=match)


def one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and isinstance(excinfo.value, UserError)
    return message


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def no_system(tmp_path, monkeypatch) -> Path:
    """No system copy of any dataset."""
    system = tmp_path / "system"
    system.mkdir()
    monkeypatch.setattr(D, "SYSTEM_DIR", system)
    return system


@pytest.fixture
def closed_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens: connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def serve():
    """serve(folder) -> base URL of a local HTTP server over that folder."""
    servers = []

    def start(folder: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _idx(array: np.ndarray) -> bytes:
    header = (0x0800 + array.ndim).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def tiny_idx_set(folder: Path, n_train=40, n_test=12, size=6, seed=0) -> dict[str, bytes]:
    """Four gzipped IDX files like MNIST's, small; returns their decompressed contents by file name."""
    rng = np.random.default_rng(seed)
    contents = {
        "train-images-idx3-ubyte.gz": _idx(rng.integers(0, 256, (n_train, size, size))),
        "train-labels-idx1-ubyte.gz": _idx(np.arange(n_train) % 10),
        "t10k-images-idx3-ubyte.gz": _idx(rng.integers(0, 256, (n_test, size, size))),
        "t10k-labels-idx1-ubyte.gz": _idx(np.arange(n_test) % 10),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in contents.items():
        (folder / name).write_bytes(gzip.compress(content, mtime=0))
    return contents


def remote_for(folder: Path, url: str, contents: dict[str, bytes] | None = None) -> D.Remote:
    """A Remote publishing the files in ``folder``; with ``contents``, also their content hashes."""
    specs = []
    for name in sorted(p.name for p in folder.iterdir()):
        md5 = hashlib.md5((folder / name).read_bytes()).hexdigest()
        if contents is None:
            specs.append(D.FileSpec(name, md5))
        else:
            specs.append(
                D.FileSpec(name, md5, hashlib.sha256(contents[name]).hexdigest(), len(contents[name]))
            )
    return D.Remote(url, tuple(specs))


def copy_debian(dest: Path, *, copy: tuple[str, ...] = ()) -> Path:
    """The Debian Fashion-MNIST files in ``dest``: symlinks, real copies for the names in ``copy``."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in D.REMOTES["fashion-mnist"].files:
        if f.name in copy:
            shutil.copyfile(DEBIAN_FASHION / f.name, dest / f.name)
        else:
            (dest / f.name).symlink_to(DEBIAN_FASHION / f.name)
    return dest


# ---------------------------------------------------------------- digits and the split


def test_digits_loads_standardized(tmp_path):
    d = load_data("digits", cache_dir=tmp_path)
    assert d.classes == tuple("0123456789") and d.n_classes == 10
    assert d.input_shape == (1, 8, 8) and d.source == "scikit-learn load_digits"
    # 1,797 images: a fixed 20% (359) is the test set; 10% of the other 1,438 is validation
    assert (
        d.x_train.shape == (1294, 1, 8, 8)
        and d.x_val.shape == (144, 1, 8, 8)
        and d.x_test.shape == (359, 1, 8, 8)
    )
    for x, y in ((d.x_train, d.y_train), (d.x_val, d.y_val), (d.x_test, d.y_test)):
        assert x.dtype == torch.float32 and y.dtype == torch.int64 and len(x) == len(y)
    assert abs(d.x_train.mean().item()) < 1e-5 and abs(d.x_train.std(correction=0).item() - 1) < 1e-4
    assert 0.25 < d.mean[0] < 0.35 and 0 < d.std[0] < 1  # of pixels scaled 0..16 -> [0, 1]
    assert set(d.y_train.tolist()) == set(range(10))
    summary = d.summary()
    assert json.loads(json.dumps(summary)) == summary
    assert summary["n_train"] == 1294 and summary["n_val"] == 144 and summary["n_test"] == 359
    moved = d.to("cpu")
    assert moved is not d and torch.equal(moved.x_val, d.x_val) and moved.fingerprint == d.fingerprint


def test_split_depends_only_on_split_seed(tmp_path):
    a = load_data("digits", cache_dir=tmp_path, split_seed=3)
    b = load_data("digits", cache_dir=tmp_path / "elsewhere", split_seed=3)
    c = load_data("digits", cache_dir=tmp_path, split_seed=4)
    assert (
        a.fingerprint == b.fingerprint and torch.equal(a.x_val, b.x_val) and torch.equal(a.y_train, b.y_train)
    )
    assert c.fingerprint != a.fingerprint and not torch.equal(c.x_val, a.x_val)
    assert torch.equal(a.y_test, c.y_test)  # the test set never moves (its standardization may)


def test_split_indices_subset_then_validation():
    train, val = split_indices(1000, subset=200, validation=0.25, split_seed=1)
    assert len(train) == 150 and len(val) == 50
    assert not set(train) & set(val) and max(train.max(), val.max()) < 1000
    assert list(train) == sorted(train) and list(val) == sorted(val)
    train2, val2 = split_indices(1000, subset=200, validation=30, split_seed=1)
    assert len(val2) == 30 and set(train2) | set(val2) == set(train) | set(val)  # same 200 images
    full_train, full_val = split_indices(1000, validation=100.0, split_seed=1)
    assert len(full_train) == 900 and len(full_val) == 100
    again = split_indices(1000, subset=200, validation=0.25, split_seed=1)
    assert all(np.array_equal(p, q) for p, q in zip(again, (train, val), strict=True))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"validation": 1.5}, "data.validation: 1.5"),
        ({"validation": 0}, "data.validation"),
        ({"validation": 100}, "leaves none to train on"),
        ({"subset": 200}, "data.subset: 200 is more than the 100"),
        ({"split_seed": -1}, "data.split_seed"),
    ],
)
def test_split_indices_errors(kwargs, match):
    with raises(match) as e:
        split_indices(100, **kwargs)
    one_line(e)


def test_digits_subset_honoured(tmp_path):
    d = load_data("digits", cache_dir=tmp_path, subset=300, validation=50)
    assert len(d.y_train) == 250 and len(d.y_val) == 50 and len(d.y_test) == 359


# ---------------------------------------------------------------- fashion-mnist: system, cache, corruption


@needs_debian_fashion
def test_fashion_mnist_from_the_debian_package(tmp_path, monkeypatch, closed_url):
    monkeypatch.setattr(D, "SYSTEM_DIR", DEBIAN_FASHION.parent)
    remote = D.REMOTES["fashion-mnist"]
    monkeypatch.setitem(D.REMOTES, "fashion-mnist", dataclasses.replace(remote, url=closed_url))
    d = load_data("fashion-mnist", cache_dir=tmp_path, validation=5000)
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (55_000, 5_000, 10_000)
    assert d.source == str(DEBIAN_FASHION) and d.classes[0] == "T-shirt/top" and d.input_shape == (1, 28, 28)
    assert abs(d.mean[0] - 0.286) < 0.002 and abs(d.std[0] - 0.353) < 0.002
    assert torch.bincount(d.y_test).tolist() == [1000] * 10
    small = load_data("fashion-mnist", cache_dir=tmp_path, subset=1000, validation=0.1)
    assert (len(small.y_train), len(small.y_val), len(small.y_test)) == (900, 100, 10_000)
    assert files_in(tmp_path) == []  # read in place, nothing copied or downloaded
    assert fetch("fashion-mnist", cache_dir=tmp_path) == [DEBIAN_FASHION / f.name for f in remote.files]


@needs_debian_fashion
def test_fashion_mnist_from_the_cache(tmp_path, monkeypatch, no_system, closed_url):
    copy_debian(tmp_path / "runs" / "data" / "fashion-mnist")
    remote = D.REMOTES["fashion-mnist"]
    monkeypatch.setitem(D.REMOTES, "fashion-mnist", dataclasses.replace(remote, url=closed_url))
    d = load_data("fashion-mnist", cache_dir=tmp_path / "runs" / "data", subset=2000, split_seed=5)
    assert d.source == str(tmp_path / "runs" / "data" / "fashion-mnist")
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (1800, 200, 10_000)
    # the same data read from the system folder gives the same fingerprint
    monkeypatch.setattr(D, "SYSTEM_DIR", DEBIAN_FASHION.parent)
    same = load_data("fashion-mnist", cache_dir=tmp_path / "nothing", subset=2000, split_seed=5)
    assert same.source == str(DEBIAN_FASHION) and same.fingerprint == d.fingerprint
    row = next(r for r in dataset_table(tmp_path / "runs" / "data") if r["name"] == "fashion-mnist")
    assert row["where"] == f"cache: {tmp_path / 'runs' / 'data' / 'fashion-mnist'}"


@needs_debian_fashion
def test_truncated_system_file_is_named(tmp_path, monkeypatch):
    system = tmp_path / "system"
    folder = copy_debian(system / "fashion-mnist", copy=("train-labels-idx1-ubyte.gz",))
    bad = folder / "train-labels-idx1-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:5000])
    monkeypatch.setattr(D, "SYSTEM_DIR", system)
    with raises("truncated or not gzip") as e:
        load_data("fashion-mnist", cache_dir=tmp_path / "cache", download=False)
    message = one_line(e)
    assert str(bad) in message and "reinstall" in message


@needs_debian_fashion
def test_altered_cache_file_is_named(tmp_path, no_system):
    folder = copy_debian(tmp_path / "cache" / "fashion-mnist")
    bad = folder / "t10k-labels-idx1-ubyte.gz"
    labels = bytearray(gzip.decompress(bad.read_bytes()))
    labels[100] = (labels[100] + 1) % 10
    bad.unlink()
    bad.write_bytes(gzip.compress(bytes(labels)))  # a well-formed gzip with the wrong content
    with raises("does not match the published data") as e:
        load_data("fashion-mnist", cache_dir=tmp_path / "cache", download=False)
    message = one_line(e)
    assert str(bad) in message and "delete it and run `archsearch data get fashion-mnist`" in message


def test_missing_dataset_with_failing_download(tmp_path, monkeypatch, no_system, closed_url):
    remote = D.REMOTES["fashion-mnist"]
    monkeypatch.setitem(D.REMOTES, "fashion-mnist", dataclasses.replace(remote, url=closed_url))
    cache = tmp_path / "runs" / "data"
    with raises(f"the download from {closed_url}train-images-idx3-ubyte.gz failed") as e:
        load_data("fashion-mnist", cache_dir=cache)
    message = one_line(e)
    assert f"not in {cache / 'fashion-mnist'} or {no_system / 'fashion-mnist'}" in message
    assert "--data-dir" in message
    assert files_in(cache) == [] and not (cache / "fashion-mnist").exists()  # no partial or temporary file
    with raises("downloads are off") as e:
        load_data("fashion-mnist", cache_dir=cache, download=False)
    assert "archsearch data get fashion-mnist" in one_line(e)


def test_missing_file_url_gives_data_error(tmp_path, monkeypatch):
    nowhere = (tmp_path / "no-such-mirror").as_uri() + "/"
    monkeypatch.setitem(D.REMOTES, "mnist", dataclasses.replace(D.REMOTES["mnist"], url=nowhere))
    with raises("mnist: not in .* and the download from file:.* failed") as e:
        fetch("mnist", cache_dir=tmp_path / "cache")
    one_line(e)
    assert files_in(tmp_path / "cache") == []


# ---------------------------------------------------------------- downloads


@pytest.mark.parametrize("content_hashes", [False, True], ids=["md5", "md5+sha256"])
def test_download_lands_verified_in_the_cache(tmp_path, monkeypatch, serve, closed_url, content_hashes):
    mirror = tmp_path / "mirror"
    contents = tiny_idx_set(mirror)
    remote = remote_for(mirror, serve(mirror), contents if content_hashes else None)
    monkeypatch.setitem(D.REMOTES, "mnist", remote)
    cache = tmp_path / "runs" / "data"
    d = load_data("mnist", cache_dir=cache, validation=10)
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (30, 10, 12)
    assert d.input_shape == (1, 6, 6) and d.source == str(cache / "mnist")
    assert files_in(cache) == sorted(contents)
    for name in contents:
        assert (cache / "mnist" / name).read_bytes() == (mirror / name).read_bytes()
    # from now on the cache serves, without the network
    monkeypatch.setitem(D.REMOTES, "mnist", dataclasses.replace(remote, url=closed_url))
    assert load_data("mnist", cache_dir=cache, validation=10).fingerprint == d.fingerprint
    assert fetch("mnist", cache_dir=cache) == [cache / "mnist" / f.name for f in remote.files]


def test_download_with_wrong_checksum_leaves_nothing(tmp_path, monkeypatch, serve):
    mirror = tmp_path / "mirror"
    tiny_idx_set(mirror)
    remote = remote_for(mirror, serve(mirror))
    specs = [
        dataclasses.replace(f, md5="0" * 32) if f.name.startswith("train-labels") else f for f in remote.files
    ]
    monkeypatch.setitem(D.REMOTES, "mnist", dataclasses.replace(remote, files=tuple(specs)))
    cache = tmp_path / "cache"
    with raises("train-labels-idx1-ubyte.gz does not match its published checksum") as e:
        fetch("mnist", cache_dir=cache)
    assert "was not kept" in one_line(e)
    left = files_in(cache)
    assert "train-labels-idx1-ubyte.gz" not in left and not any(n.endswith(".part") for n in left)


def test_corrupt_download_in_the_cache_is_named(tmp_path, monkeypatch, no_system):
    mirror = tmp_path / "mirror"
    tiny_idx_set(mirror)
    monkeypatch.setitem(D.REMOTES, "mnist", remote_for(mirror, "http://127.0.0.1:9/"))
    cache = tmp_path / "cache"
    shutil.copytree(mirror, cache / "mnist")
    bad = cache / "mnist" / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:-20])
    with raises("does not match the published file") as e:
        load_data("mnist", cache_dir=cache)
    message = one_line(e)
    assert str(bad) in message and "archsearch data get mnist" in message


# ---------------------------------------------------------------- data_dir: mnist, cifar10


def test_mnist_from_data_dir(tmp_path, monkeypatch):
    folder = tmp_path / "mine"
    contents = tiny_idx_set(folder, n_train=20, n_test=5)
    monkeypatch.setitem(D.REMOTES, "mnist", remote_for(folder, "http://127.0.0.1:9/"))
    d = load_data("mnist", cache_dir=tmp_path / "cache", data_dir=folder, validation=0.25)
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (15, 5, 5) and d.source == str(folder)
    pixels = np.frombuffer(contents["t10k-images-idx3-ubyte.gz"][16:], np.uint8).reshape(5, 1, 6, 6)
    restored = d.x_test * torch.tensor(d.std).view(1, -1, 1, 1) + torch.tensor(d.mean).view(1, -1, 1, 1)
    assert torch.allclose(restored, torch.from_numpy(pixels / 255).float(), atol=1e-5)
    (tmp_path / "partial").mkdir()
    shutil.copy(folder / "train-images-idx3-ubyte.gz", tmp_path / "partial")
    with raises("partial does not hold t10k-images-idx3-ubyte.gz, t10k-labels") as e:
        load_data("mnist", cache_dir=tmp_path / "cache", data_dir=tmp_path / "partial")
    assert "train-images" not in one_line(e)


def tiny_cifar(folder: Path, per_batch=4, n_test=3) -> tuple[Path, dict[str, bytes]]:
    """A CIFAR-10 binary tarball with tiny batches; returns it and its batch files' contents."""
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    blobs = {}
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, n in [*((b, per_batch) for b in D.CIFAR_TRAIN), (D.CIFAR_TEST, n_test)]:
            records = rng.integers(0, 256, (n, D.CIFAR_RECORD), dtype=np.uint8)
            records[:, 0] = np.arange(n) % 10
            blobs[name] = records.tobytes()
            info = tarfile.TarInfo(f"{D.CIFAR_FOLDER}/{name}")
            info.size = records.nbytes
            tar.addfile(info, io.BytesIO(blobs[name]))
        info = tarfile.TarInfo(f"{D.CIFAR_FOLDER}/batches.meta.txt")
        meta = "\n".join(D.CIFAR10_CLASSES).encode()
        info.size = len(meta)
        tar.addfile(info, io.BytesIO(meta))
    folder.mkdir(parents=True, exist_ok=True)
    tarball = folder / "cifar-10-binary.tar.gz"
    tarball.write_bytes(buffer.getvalue())
    return tarball, blobs


def test_cifar10_from_tarball_and_folder(tmp_path, monkeypatch):
    tarball, blobs = tiny_cifar(tmp_path / "mine")
    test_records = np.frombuffer(blobs[D.CIFAR_TEST], np.uint8).reshape(-1, D.CIFAR_RECORD)
    md5 = hashlib.md5(tarball.read_bytes()).hexdigest()
    monkeypatch.setitem(
        D.REMOTES, "cifar10", D.Remote("http://127.0.0.1:9/", (D.FileSpec(tarball.name, md5),))
    )
    d = load_data("cifar10", cache_dir=tmp_path / "cache", data_dir=tarball.parent, validation=5)
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (15, 5, 3) and d.input_shape == (3, 32, 32)
    assert d.classes[0] == "airplane" and d.y_test.tolist() == [0, 1, 2]
    restored = d.x_test * torch.tensor(d.std).view(1, 3, 1, 1) + torch.tensor(d.mean).view(1, 3, 1, 1)
    expected = torch.from_numpy(test_records[:, 1:].reshape(3, 3, 32, 32) / 255).float()
    assert torch.allclose(restored, expected, atol=1e-5)  # channel-major records
    # fetch copies the verified tarball into the cache; then the cache serves
    assert fetch("cifar10", cache_dir=tmp_path / "cache", data_dir=tarball.parent) == [
        tmp_path / "cache" / "cifar10" / tarball.name
    ]
    cached = load_data("cifar10", cache_dir=tmp_path / "cache", validation=5)
    assert cached.fingerprint == d.fingerprint
    # the extracted folder works too
    (tmp_path / "extracted" / D.CIFAR_FOLDER).mkdir(parents=True)
    for name, blob in blobs.items():
        (tmp_path / "extracted" / D.CIFAR_FOLDER / name).write_bytes(blob)
    e = load_data("cifar10", cache_dir=tmp_path / "none", data_dir=tmp_path / "extracted", validation=5)
    assert e.source == str(tmp_path / "extracted" / D.CIFAR_FOLDER) and torch.equal(e.x_test, d.x_test)
    (tmp_path / "extracted" / D.CIFAR_FOLDER / "data_batch_3.bin").write_bytes(b"\0" * 100)
    with raises("data_batch_3.bin is 100 bytes") as err:
        load_data("cifar10", cache_dir=tmp_path / "none", data_dir=tmp_path / "extracted")
    one_line(err)


# ---------------------------------------------------------------- npz and imagefolder


def test_npz_layouts_and_resize(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (30, 10, 12), dtype=np.uint8)
    y = np.arange(30) % 3
    np.savez(tmp_path / "nhw.npz", x_train=x, y_train=y, x_test=x[:6], y_test=y[:6])
    d = load_data(f"npz:{tmp_path / 'nhw.npz'}", cache_dir=tmp_path, validation=6)
    assert d.input_shape == (1, 10, 12) and d.classes == ("0", "1", "2") and len(d.y_test) == 6
    train, _ = split_indices(30, validation=6, split_seed=0)
    assert abs(d.mean[0] - x[train].mean() / 255) < 1e-5 and d.source == str(tmp_path / "nhw.npz")
    nhwc = rng.random((20, 8, 8, 3)).astype(np.float64)
    np.savez(tmp_path / "nhwc.npz", x_train=nhwc, y_train=np.arange(20) % 2)
    d = load_data(f"npz:{tmp_path / 'nhwc.npz'}", cache_dir=tmp_path, input_shape=(1, 16, 16), validation=4)
    assert d.x_train.shape == (16, 1, 16, 16) and d.x_test is None and d.y_test is None
    nchw = nhwc.transpose(0, 3, 1, 2).astype(np.float32)
    np.savez(tmp_path / "nchw.npz", x_train=nchw, y_train=np.arange(20) % 2, classes=np.array(["no", "yes"]))
    d = load_data(f"npz:{tmp_path / 'nchw.npz'}", cache_dir=tmp_path, validation=4)
    assert d.input_shape == (3, 8, 8) and d.classes == ("no", "yes")
    assert abs(d.mean[0] - nchw[:, 0].mean()) < 0.05  # floats are kept as given


def test_npz_uint8_is_scaled(tmp_path):
    x = np.zeros((10, 4, 4), np.uint8)
    x[::2] = 255
    np.savez(tmp_path / "a.npz", x_train=x, y_train=np.arange(10) % 2)
    d = load_data(f"npz:{tmp_path / 'a.npz'}", cache_dir=tmp_path, validation=0.5, split_seed=0)
    assert 0 <= d.mean[0] <= 1 and set(torch.unique(d.x_val * d.std[0] + d.mean[0]).round().tolist()) <= {
        0.0,
        1.0,
    }


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"x": np.zeros((4, 5, 5), np.uint8), "y": np.zeros(4, int)}, "lacks x_train, y_train"),
        ({"x_train": np.zeros((4, 5, 5), np.uint8)}, "lacks y_train"),
        ({"x_train": np.zeros((4, 5, 5), np.uint8), "y_train": np.zeros(3, int)}, "3 labels for 4 images"),
        (
            {"x_train": np.zeros((4, 5, 5, 5), np.uint8), "y_train": np.zeros(4, int)},
            "has shape \\[4, 5, 5, 5\\]",
        ),
        ({"x_train": np.zeros((4, 5, 5), np.uint8), "y_train": np.zeros(4)}, "1-d array of integers"),
        ({"x_train": np.zeros((4, 5, 5), np.int32), "y_train": np.zeros(4, int)}, "dtype int32"),
        (
            {"x_train": np.zeros((4, 5, 5)), "y_train": np.zeros(4, int), "x_test": np.zeros((2, 5, 5))},
            "lacks y_test",
        ),
    ],
)
def test_bad_npz(tmp_path, arrays, match):
    np.savez(tmp_path / "bad.npz", **arrays)
    with raises(match) as e:
        load_data(f"npz:{tmp_path / 'bad.npz'}", cache_dir=tmp_path)
    assert str(tmp_path / "bad.npz") in one_line(e)


def test_npz_not_an_archive(tmp_path):
    (tmp_path / "x.npz").write_text("hello")
    with raises("not a readable .npz archive"):
        load_data(f"npz:{tmp_path / 'x.npz'}", cache_dir=tmp_path)
    with raises("does not exist"):
        load_data(f"npz:{tmp_path / 'missing.npz'}", cache_dir=tmp_path)


def write_images(folder: Path, classes=("cat", "dog"), n=4, size=(12, 10), mode="RGB"):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in classes:
        (folder / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(folder / c / f"{i}.png")
    (folder / classes[0] / "notes.txt").write_text("not an image")


def test_imagefolder_flat_and_resized(tmp_path):
    write_images(tmp_path / "imgs")
    d = load_data(f"imagefolder:{tmp_path / 'imgs'}", cache_dir=tmp_path, input_shape=(1, 8, 8), validation=2)
    assert d.classes == ("cat", "dog") and d.x_train.shape == (6, 1, 8, 8) and d.x_val.shape == (2, 1, 8, 8)
    assert (
        d.x_test is None
        and d.y_test is None
        and sorted(torch.cat([d.y_train, d.y_val]).tolist()) == [0] * 4 + [1] * 4
    )
    stored = load_data(f"imagefolder:{tmp_path / 'imgs'}", cache_dir=tmp_path, validation=2)
    assert stored.input_shape == (3, 10, 12)  # RGB, as stored (width 12, height 10)


def test_imagefolder_train_test(tmp_path):
    write_images(tmp_path / "imgs" / "train", n=5, mode="L")
    write_images(tmp_path / "imgs" / "test", n=2, mode="L")
    d = load_data(f"imagefolder:{tmp_path / 'imgs'}", cache_dir=tmp_path, validation=0.2)
    assert d.input_shape == (1, 10, 12) and (len(d.y_train), len(d.y_val), len(d.y_test)) == (8, 2, 4)
    assert d.y_test.tolist() == [0, 0, 1, 1]


def test_imagefolder_problems(tmp_path):
    write_images(tmp_path / "mixed", n=2)
    write_images(tmp_path / "mixed", classes=("dog",), n=1, size=(7, 7))  # dog/0.png is now 7x7
    with raises("set data.input_shape") as e:
        load_data(f"imagefolder:{tmp_path / 'mixed'}", cache_dir=tmp_path)
    one_line(e)
    (tmp_path / "empty" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "b").mkdir()
    with raises("holds no images"):
        load_data(f"imagefolder:{tmp_path / 'empty'}", cache_dir=tmp_path)
    with raises("is not a folder"):
        load_data(f"imagefolder:{tmp_path / 'nowhere'}", cache_dir=tmp_path)


# ---------------------------------------------------------------- resizing and channels


def test_resize_images_channels_and_size():
    gray = torch.rand(2, 1, 28, 28)
    rgb = resize_images(gray, (3, 28, 28))
    assert (
        rgb.shape == (2, 3, 28, 28)
        and torch.equal(rgb[:, 0], rgb[:, 2])
        and torch.equal(rgb[:, 1], gray[:, 0])
    )
    red = torch.zeros(1, 3, 4, 4)
    red[:, 0] = 1
    assert torch.allclose(resize_images(red, (1, 4, 4)), torch.full((1, 1, 4, 4), 0.299))
    flat = torch.full((1, 1, 28, 28), 0.4)
    assert torch.allclose(resize_images(flat, (1, 14, 14)), torch.full((1, 1, 14, 14), 0.4))
    stripes = torch.zeros(1, 1, 28, 28)
    stripes[..., ::2] = 1
    small = resize_images(stripes, (1, 14, 14))  # antialiased: stripes average out, not alias to 0 or 1
    assert small.shape == (1, 1, 14, 14) and 0.3 < small.mean() < 0.7 and small.std() < 0.2
    assert resize_images(gray, (1, 56, 40)).shape == (2, 1, 56, 40)
    with raises("cannot turn 2-channel images into 3-channel ones"):
        resize_images(torch.zeros(1, 2, 4, 4), (3, 4, 4))


def test_load_data_resizes_digits(tmp_path):
    d = load_data("digits", cache_dir=tmp_path, input_shape=[3, 16, 16])
    assert (
        d.input_shape == (3, 16, 16)
        and d.x_train.shape[1:] == (3, 16, 16)
        and d.x_test.shape[1:] == (3, 16, 16)
    )
    assert len(d.mean) == 3 and abs(d.x_train[:, 2].mean().item()) < 1e-5


# ---------------------------------------------------------------- fetch and the table


def test_fetch_names(tmp_path):
    assert fetch("digits", cache_dir=tmp_path) == []
    with raises("read in place"):
        fetch("npz:/x.npz", cache_dir=tmp_path)
    with raises("unknown dataset 'nope'"):
        fetch("nope", cache_dir=tmp_path)


def test_dataset_table(tmp_path, no_system):
    rows = {r["name"]: r for r in dataset_table(tmp_path)}
    assert list(rows) == ["digits", "fashion-mnist", "mnist", "cifar10", "imagefolder:PATH", "npz:PATH"]
    assert rows["digits"]["where"] == "built in" and rows["digits"]["train"] + rows["digits"]["test"] == 1797
    assert rows["fashion-mnist"]["where"] == "not downloaded (archsearch data get fashion-mnist)"
    assert rows["fashion-mnist"]["shape"] == "1x28x28" and rows["cifar10"]["shape"] == "3x32x32"
    for f in D.REMOTES["fashion-mnist"].files:
        (no_system / "fashion-mnist").mkdir(exist_ok=True)
        (no_system / "fashion-mnist" / f.name).touch()
    rows = {r["name"]: r for r in dataset_table(tmp_path)}
    assert rows["fashion-mnist"]["where"] == f"system: {no_system / 'fashion-mnist'}"
