"""Image folders (seed 001's transform, in memory and streamed) and the colored-pi points (seed 004)."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vaelab.data import DataConfig, StreamSplit, list_images, load_data, load_image, load_pi, render_points
from vaelab.core.errors import DataError

SHARED = Path(__file__).parents[1] / ".." / "shared" / "data"


def make_folder(root: Path, per_class=3, classes=("cats", "dogs")):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            a = rng.integers(0, 256, (20 + i, 30, 3), dtype=np.uint8)  # non-square
            Image.fromarray(a).save(root / c / f"{i}.{'png' if i % 2 else 'jpg'}")
    return root


def _load(path, **options):
    return load_data(DataConfig(name="image_folder", path=path, options=options, val_fraction=0, test_fraction=0), 0)


def test_list_images_labels_from_sorted_subfolders(tmp_path):
    make_folder(tmp_path, classes=("zebra", "ant"))
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    items = list_images(tmp_path)
    assert [lab for _, lab in items] == [0, 0, 0, 1, 1, 1]
    assert items[0][0].parent.name == "ant"


def test_image_folder_in_memory(tmp_path):
    make_folder(tmp_path)
    b = _load(tmp_path, size=16)
    assert b.shape == (3, 16, 16) and len(b.train) == 6 and b.value_range == (-1.0, 1.0)
    assert b.class_names == ["cats", "dogs"] and b.num_classes == 2
    assert -1.0 <= float(b.train.x.min()) and float(b.train.x.max()) <= 1.0
    g = _load(tmp_path, size=8, channels=1, scale="01")
    assert g.shape == (1, 8, 8) and g.value_range == (0.0, 1.0) and float(g.train.x.min()) >= 0


def test_transform_pads_to_square_then_crops_centre(tmp_path):
    a = np.full((10, 40, 3), 255, np.uint8)  # wide white strip: padding adds black above and below
    Image.fromarray(a).save(tmp_path / "wide.png")
    x = load_image(tmp_path / "wide.png", size=32, channels=3, scale="01")
    assert x.shape == (3, 32, 32)
    assert x[:, 0].max() < 0.05 and x[:, 16].min() > 0.95  # top row black, middle row white
    assert torch.equal(x, load_image(tmp_path / "wide.png", size=32, channels=3, scale="01"))  # no random flip


def test_unreadable_image_is_skipped_with_a_warning(tmp_path):
    make_folder(tmp_path)
    (tmp_path / "cats" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.warns(UserWarning, match="broken.png"):
        b = _load(tmp_path, size=8)
    assert len(b.train) == 6
    with pytest.raises(DataError, match="broken.png"):
        load_image(tmp_path / "cats" / "broken.png")


def test_empty_folder(tmp_path):
    with pytest.raises(DataError, match="no images"):
        _load(tmp_path)


def test_stream_matches_in_memory(tmp_path):
    make_folder(tmp_path)
    (tmp_path / "dogs" / "broken.jpg").write_bytes(b"nope")
    with pytest.warns(UserWarning, match="broken.jpg"):
        s = _load(tmp_path, size=8, stream=True, num_workers=0)
    with pytest.warns(UserWarning, match="broken.jpg"):
        m = _load(tmp_path, size=8)
    assert isinstance(s.train, StreamSplit) and s.shape == (3, 8, 8) and len(s.train) == 6
    xs, ys = s.train.take(6)
    assert torch.allclose(xs, m.train.x) and torch.equal(ys, m.train.y)
    got = {}
    for xb, yb in s.train.batches(4, shuffle=True, generator=torch.Generator().manual_seed(0)):
        for x, y in zip(xb, yb):
            got[x.sum().item()] = y.item()
    assert len(got) == 6  # every image exactly once


def test_stream_with_worker_processes(tmp_path):
    make_folder(tmp_path, per_class=4)
    b = load_data(
        DataConfig(name="image_folder", path=tmp_path, options={"size": 8, "stream": True, "num_workers": 2}), 0
    )
    n = sum(len(xb) for xb, _ in b.train.batches(3, shuffle=True, generator=torch.Generator().manual_seed(1)))
    assert n == len(b.train) and len(b.train) + len(b.val) + len(b.test) == 8


# ---- colored pi (seed 004)

def make_pi(folder: Path):
    img = np.zeros((300, 300, 3), np.uint8)
    xs, ys = np.array([10, 100, 250]), np.array([20, 200, 30])
    img[xs, ys] = [[255, 0, 0], [0, 255, 0], [0, 0, 255]]
    Image.fromarray(img).save(folder / "sparse_pi_colored.png")
    np.save(folder / "pi_xs.npy", xs)
    np.save(folder / "pi_ys.npy", ys)


def test_pi_synthetic_rows_are_xs(tmp_path):
    make_pi(tmp_path)
    p = load_pi(tmp_path, image="sparse_pi_colored.png")
    assert np.allclose(p[:, :2] * 300, [[10, 20], [100, 200], [250, 30]])
    assert np.allclose(p[:, 2:], np.eye(3))
    b = load_data(DataConfig(name="colored_pi", path=tmp_path, options={"image": "sparse_pi_colored.png"}), 0)
    assert b.shape == (5,)


def test_render_puts_pixel_at_row_x_col_y():
    img = render_points(np.array([[0.1, 0.5, 1.0, 0.5, 0.0], [1.2, -0.1, 0, 0, 1]]))
    assert img.shape == (300, 300, 3) and img.dtype == np.uint8
    assert img[30, 150].tolist() == [255, 128, 0]
    assert img[299, 0].tolist() == [0, 0, 255]  # clipped into the canvas
    assert (img > 0).any(axis=-1).sum() == 2


def test_pi_missing_file(tmp_path):
    with pytest.raises(DataError, match="pi_xs.npy"):
        load_data(DataConfig(name="colored_pi", path=tmp_path), 0)


@pytest.mark.skipif(not (SHARED / "colored_pi").is_dir(), reason=f"colored pi files not present at {SHARED}")
def test_pi_real_files():
    p = load_pi(SHARED / "colored_pi")
    assert p.shape == (5000, 5) and p.dtype == np.float32
    assert np.allclose(p.min(0), [0.080, 0.130, 0.078, 0.075, 0.106], atol=2e-3)
    assert np.allclose(p.max(0), [0.913, 0.860, 0.890, 0.890, 0.996], atol=2e-3)
    assert np.allclose(p.mean(0), [0.494, 0.488, 0.553, 0.551, 0.689], atol=2e-3)
    assert (p[:, 2:].max(1) * 255 >= 19).all()  # every point is bright with xs as rows
    img = render_points(p)
    xs = np.load(SHARED / "colored_pi" / "pi_xs.npy")
    ys = np.load(SHARED / "colored_pi" / "pi_ys.npy")
    assert (img[xs, ys].max(-1) > 0).all() and (img.max(-1) > 0).sum() == 5000
    colours = np.asarray(Image.open(SHARED / "colored_pi" / "sparse_pi_colored.jpg").convert("RGB"))
    assert np.array_equal(img[xs, ys], colours[xs, ys])  # render inverts load exactly
