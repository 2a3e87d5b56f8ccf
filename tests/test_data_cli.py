"""`vaelab data describe/list/make-shapes/make-amass` and the synthetic generators behind them."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from vaelab.cli.app import app
from vaelab.data import DataConfig, load_data, quat_to_axis_angle
from vaelab.data.report import describe_dataset
from vaelab.core.errors import ConfigError, DataError
from vaelab.data.synthetic import make_amass, make_shapes, synthetic_poses

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared" / "data" / "mnist"
runner = CliRunner()


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*.png")):
        h.update(p.relative_to(folder).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def test_make_shapes_is_deterministic_and_loads_as_labelled_folder(tmp_path):
    a = make_shapes(tmp_path / "a", per_class=4, seed=3)
    b = make_shapes(tmp_path / "b", per_class=4, seed=3)
    c = make_shapes(tmp_path / "c", per_class=4, seed=4)
    assert _digest(a) == _digest(b) != _digest(c)
    bundle = load_data(DataConfig(name="image_folder", path=a, options={"size": 16}, val_fraction=0, test_fraction=0), 0)
    assert bundle.shape == (3, 16, 16) and bundle.num_classes == 3 and len(bundle.train) == 12
    assert bundle.class_names == ["circle", "square", "triangle"]


def test_make_shapes_rejects_bad_arguments(tmp_path):
    with pytest.raises(ConfigError, match="per_class"):
        make_shapes(tmp_path, per_class=0)
    with pytest.raises(ConfigError, match="hexagon"):
        make_shapes(tmp_path, classes=("hexagon",))


def test_make_amass_has_the_amass_keys_and_loads_as_88_wide_quaternions(tmp_path):
    path = make_amass(tmp_path / "clip_poses.npz", frames=50, seed=1)
    with np.load(path) as z:
        assert set(z.files) == {"poses", "trans", "betas", "mocap_framerate", "gender", "dmpls"}
        assert z["poses"].shape == (50, 156) and z["trans"].shape == (50, 3) and z["betas"].shape == (16,)
        assert z["dmpls"].shape == (50, 8) and float(z["mocap_framerate"]) == 120.0 and str(z["gender"]) == "male"
        poses = z["poses"]
    np.testing.assert_array_equal(poses, synthetic_poses(50, seed=1))  # same seed, same arrays
    bundle = load_data(DataConfig(name="amass", path=path, val_fraction=0, test_fraction=0), 0)
    x = bundle.train.take(50)[0].numpy()
    assert x.shape == (50, 88)
    q = x.reshape(50, 22, 4)
    np.testing.assert_allclose(np.linalg.norm(q, axis=-1), 1.0, atol=1e-5)
    assert (q[..., 3] >= 0).all() and (q < 0).any()  # w >= 0, and other components do go negative
    back = quat_to_axis_angle(q.astype(np.float64))
    ref = poses[:, :66].reshape(50, 22, 3)
    # compare rotations, not vectors (an angle past pi comes back as its shorter equivalent)
    from scipy.spatial.transform import Rotation

    diff = Rotation.from_rotvec(back.reshape(-1, 3)).inv() * Rotation.from_rotvec(ref.reshape(-1, 3))
    assert diff.magnitude().max() < 1e-5  # float32 storage limits this, not the conversion


def test_make_amass_rejects_a_name_without_npz(tmp_path):
    with pytest.raises(ConfigError, match=".npz"):
        make_amass(tmp_path / "clip.txt")


def test_cli_make_commands_write_files(tmp_path):
    r = runner.invoke(app, ["data", "make-shapes", str(tmp_path / "s"), "--per-class", "2"])
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "s").rglob("*.png"))) == 6 and "6 images" in r.output
    r = runner.invoke(app, ["data", "make-amass", str(tmp_path / "m.npz"), "--frames", "10"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "m.npz").is_file()


def test_cli_list_names_every_dataset():
    r = runner.invoke(app, ["data", "list"])
    assert r.exit_code == 0
    for name in ("mnist", "fashion_mnist", "kmnist", "cifar10", "image_folder", "table", "amass", "colored_pi"):
        assert name in r.output


@pytest.mark.skipif(not MNIST.is_dir(), reason="shared MNIST is not present")
def test_describe_mnist_sizes_and_label_counts():
    info = describe_dataset("mnist", MNIST)
    s = info["splits"]
    assert s["train"]["size"] + s["val"]["size"] == 4742 and s["test"]["size"] == 10_000
    assert info["shape"] == [1, 28, 28] and info["dtype"] == "float32" and info["value_range"] == [0.0, 1.0]
    # the official t10k label counts
    assert [s["test"]["label_counts"][str(i)] for i in range(10)] == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert sum(s["train"]["label_counts"].values()) == s["train"]["size"]


@pytest.mark.skipif(not MNIST.is_dir(), reason="shared MNIST is not present")
def test_cli_describe_text_and_json():
    r = runner.invoke(app, ["data", "describe", "mnist", str(MNIST)])
    assert r.exit_code == 0, r.output
    assert "(1, 28, 28)" in r.output and "10,000 samples" in r.output and "labels: 0=980" in r.output
    r = runner.invoke(app, ["data", "describe", "mnist", str(MNIST), "--json"])
    assert json.loads(r.output)["splits"]["test"]["size"] == 10_000


def test_describe_a_config_uses_its_data_section_and_overrides(tmp_path):
    make_shapes(tmp_path / "shapes", per_class=5, seed=0)
    info = describe_dataset(REPO / "configs" / "seed001-sd-folder.yaml", overrides=[f"data.path={tmp_path / 'shapes'}"])
    assert info["shape"] == [3, 32, 32] and info["value_range"] == [-1.0, 1.0]
    assert sum(s["size"] for s in info["splits"].values()) == 15
    assert info["splits"]["train"]["observed_min"] >= -1.0


def test_describe_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="(?i)did you mean 'mnist'"):
        describe_dataset("mnsit", tmp_path)
    with pytest.raises(ConfigError, match="data.options.foo"):
        describe_dataset("image_folder", tmp_path, options=["foo=1"])
    with pytest.raises(DataError, match="no images"):
        describe_dataset("image_folder", tmp_path)
    with pytest.raises(ConfigError, match="--set"):
        describe_dataset(REPO / "configs" / "seed001-sd-folder.yaml", tmp_path)
