"""MNIST-family IDX files (generated and real), KMNIST .npz, CIFAR-10 pickles."""
import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from vaelab.data import DataConfig, load_data, read_idx
from vaelab.data.cifar import safe_load
from vaelab.core.errors import DataError

SHARED = Path(__file__).parents[1] / ".." / "shared" / "data"


def write_idx(path: Path, arr: np.ndarray, magic: int | None = None) -> Path:
    """A tiny IDX writer: big-endian magic 0x08<ndim>, then the dims, then the bytes."""
    arr = np.asarray(arr, dtype=np.uint8)
    head = struct.pack(">I", magic if magic is not None else 0x800 + arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    raw = head + arr.tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)
    return path


def make_mnist(folder: Path, n_train=12, n_test=5, suffix=".gz", seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    data = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", x)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", y)
        data[prefix] = (x, y)
    return data


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_idx_round_trip(tmp_path, suffix):
    data = make_mnist(tmp_path, suffix=suffix)
    b = load_data(DataConfig(name="mnist", path=tmp_path, val_fraction=0), 0)
    assert b.shape == (1, 28, 28) and b.num_classes == 10 and b.value_range == (0.0, 1.0)
    x, y = data["t10k"]
    assert torch.allclose(b.test.x, torch.from_numpy(x).float().div(255).unsqueeze(1))
    assert b.test.y.tolist() == y.tolist() and b.test.y.dtype == torch.int64
    assert len(b.train) == 12


def test_idx_pm1_and_fashion_and_kmnist_names(tmp_path):
    make_mnist(tmp_path)
    b = load_data(DataConfig(name="fashion_mnist", path=tmp_path, options={"scale": "pm1"}), 0)
    assert b.value_range == (-1.0, 1.0) and float(b.test.x.min()) >= -1.0 and float(b.test.x.min()) < -0.9
    assert b.class_names[0] == "T-shirt/top"
    assert load_data(DataConfig(name="kmnist", path=tmp_path), 0).class_names[:2] == ["o", "ki"]


def test_kmnist_npz(tmp_path):
    rng = np.random.default_rng(1)
    for split, n in (("train", 9), ("test", 4)):
        np.savez_compressed(tmp_path / f"kmnist-{split}-imgs.npz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        np.savez_compressed(tmp_path / f"kmnist-{split}-labels.npz", rng.integers(0, 10, n, dtype=np.uint8))
    b = load_data(DataConfig(name="kmnist", path=tmp_path, val_fraction=0), 0)
    assert len(b.train) == 9 and len(b.test) == 4 and b.shape == (1, 28, 28)


def test_labels_paired_by_suffix_not_by_name(tmp_path):
    x = np.zeros((3, 28, 28), np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte.first3.gz", x)
    write_idx(tmp_path / "train-labels-idx1-ubyte.first3.gz", np.array([1, 2, 3]))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(10))  # the full labels file: must be ignored
    b = load_data(DataConfig(name="mnist", path=tmp_path, val_fraction=0, test_fraction=0), 0)
    assert b.train.y.tolist() == [1, 2, 3]


def test_missing_files_say_what_was_looked_for(tmp_path):
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.*t10k-images-idx3-ubyte"):
        load_data(DataConfig(name="mnist", path=tmp_path), 0)
    with pytest.raises(DataError, match="does not exist"):
        load_data(DataConfig(name="mnist", path=tmp_path / "nope"), 0)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((2, 28, 28)))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz"):
        load_data(DataConfig(name="mnist", path=tmp_path), 0)


def test_truncated_gzip(tmp_path):
    make_mnist(tmp_path)
    p = tmp_path / "train-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[:-200])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz.*truncated"):
        load_data(DataConfig(name="mnist", path=tmp_path), 0)


def test_bad_magic(tmp_path):
    make_mnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(5), magic=0x1234)
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz.*magic number is 0x1234, expected 0x801"):
        load_data(DataConfig(name="mnist", path=tmp_path), 0)


def test_short_data_after_header(tmp_path):
    p = write_idx(tmp_path / "a-idx3-ubyte", np.zeros((4, 28, 28)))
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(DataError, match="header says"):
        read_idx(p, 3)


def test_count_mismatch(tmp_path):
    make_mnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(4))
    with pytest.raises(DataError, match=r"5 images but .*t10k-labels-idx1-ubyte\.gz holds 4 labels"):
        load_data(DataConfig(name="mnist", path=tmp_path), 0)


needs_mnist = pytest.mark.skipif(not (SHARED / "mnist").is_dir(), reason=f"real MNIST not present at {SHARED / 'mnist'}")


@needs_mnist
def test_real_mnist():
    b = load_data(DataConfig(name="mnist", path=SHARED / "mnist", val_fraction=0), 0)
    assert len(b.test) == 10000 and len(b.train) == 4742  # the 60000-label file is not paired with 4742 images
    assert b.test.x.shape == (10000, 1, 28, 28) and b.train.x.shape == (4742, 1, 28, 28)
    assert b.train.y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert torch.bincount(b.train.y).tolist() == [454, 526, 470, 468, 505, 416, 477, 517, 441, 468]
    assert torch.bincount(b.test.y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.skipif(not (SHARED / "fashion_mnist").is_dir(), reason="real Fashion-MNIST not present")
def test_real_fashion_mnist_test_only_is_split():
    b = load_data(DataConfig(name="fashion_mnist", path=SHARED / "fashion_mnist"), 0)
    assert len(b.train) + len(b.val) + len(b.test) == 4443


def _cifar_batch(path: Path, n: int, rng):
    d = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": rng.integers(0, 10, n).tolist()}
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=2)
    return d


def test_cifar10_batches(tmp_path):
    rng = np.random.default_rng(0)
    first = _cifar_batch(tmp_path / "data_batch_1", 6, rng)
    _cifar_batch(tmp_path / "data_batch_2", 4, rng)
    test = _cifar_batch(tmp_path / "test_batch", 3, rng)
    b = load_data(DataConfig(name="cifar10", path=tmp_path, val_fraction=0), 0)
    assert b.shape == (3, 32, 32) and len(b.train) == 10 and len(b.test) == 3
    assert b.test.y.tolist() == test[b"labels"]
    red = first[b"data"][0, :1024].reshape(32, 32) / 255.0  # first 1024 values are the red plane
    assert np.allclose(b.train.x[0, 0].numpy(), red)


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        import os

        return (os.makedirs, (self.target,))


def test_cifar_pickle_cannot_run_code(tmp_path):
    target = tmp_path / "pwned"
    with open(tmp_path / "data_batch_1", "wb") as f:
        pickle.dump({b"data": _Evil(str(target))}, f)
    with pytest.raises(DataError, match="refusing to load"):
        load_data(DataConfig(name="cifar10", path=tmp_path), 0)
    assert not target.exists()
    with pytest.raises(DataError):
        safe_load(tmp_path / "data_batch_1")
