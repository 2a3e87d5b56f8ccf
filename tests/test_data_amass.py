"""AMASS (seed 000): axis-angle -> unit quaternions, conventions, round trip, CSV export."""
import numpy as np
import pytest
import torch

from vaelab.data import DataConfig, axis_angle_to_quat, export_quat_csv, load_data, quat_to_axis_angle
from vaelab.core.errors import DataError


def rotmat(aa: np.ndarray) -> np.ndarray:
    """Rodrigues: (..., 3) -> (..., 3, 3); compares rotations without the 2pi / sign ambiguity."""
    th = np.linalg.norm(aa, axis=-1, keepdims=True)[..., None]
    k = aa / np.maximum(np.linalg.norm(aa, axis=-1, keepdims=True), 1e-300)
    K = np.zeros(aa.shape[:-1] + (3, 3))
    K[..., 0, 1], K[..., 0, 2], K[..., 1, 2] = -k[..., 2], k[..., 1], -k[..., 0]
    K = K - np.swapaxes(K, -1, -2)
    return np.eye(3) + np.sin(th) * K + (1 - np.cos(th)) * K @ K


def make_amass(path, T=40, cols=156, seed=0):
    rng = np.random.default_rng(seed)
    poses = rng.normal(scale=1.5, size=(T, cols))
    poses[0, :3] = 0.0  # identity rotation
    poses[1, :3] = [1e-9, 0, 0]  # angle ~ 0
    np.savez(
        path,
        poses=poses,
        trans=rng.normal(size=(T, 3)),
        betas=rng.normal(size=16),
        gender=np.array("male"),
        mocap_framerate=np.array(120.0),
        dmpls=rng.normal(size=(T, 8)),
    )
    return poses


def _load(path, **options):
    return load_data(DataConfig(name="amass", path=path, options=options, val_fraction=0, test_fraction=0), 0)


def test_amass_quaternions(tmp_path):
    poses = make_amass(tmp_path / "clip_poses.npz")
    b = _load(tmp_path / "clip_poses.npz")
    x = b.train.x.double().numpy()
    assert x.shape == (40, 88) and b.shape == (88,) and b.value_range == (-1.0, 1.0)
    q = x.reshape(40, 22, 4)
    assert np.abs(np.linalg.norm(q, axis=-1) - 1).max() < 1e-6
    assert (q[..., 3] >= 0).all()
    assert np.allclose(q[0, 0], [0, 0, 0, 1])
    aa = poses[:, :66].reshape(40, 22, 3)
    back = quat_to_axis_angle(axis_angle_to_quat(aa))
    assert np.abs(rotmat(back) - rotmat(aa)).max() < 1e-6
    assert np.abs(q - axis_angle_to_quat(aa)).max() < 1e-6  # float32 storage


def test_wxyz_order_and_joint_count(tmp_path):
    make_amass(tmp_path / "a.npz")
    xyzw = _load(tmp_path / "a.npz", joints=5).train.x.reshape(-1, 5, 4)
    wxyz = _load(tmp_path / "a.npz", joints=5, order="wxyz").train.x.reshape(-1, 5, 4)
    assert xyzw.shape == (40, 5, 4) and torch.equal(wxyz, xyzw[..., [3, 0, 1, 2]])
    assert (wxyz[..., 0] >= 0).all()


@pytest.mark.parametrize("order", ["xyzw", "wxyz"])
def test_numpy_fallback_matches_scipy(order):
    rng = np.random.default_rng(1)
    aa = np.concatenate([rng.normal(scale=2.0, size=(200, 3)), rng.normal(scale=1e-7, size=(10, 3)), np.zeros((1, 3))])
    q_np = axis_angle_to_quat(aa, order, use_scipy=False)
    assert np.abs(q_np - axis_angle_to_quat(aa, order)).max() < 1e-9
    for use_scipy in (True, False):
        back = quat_to_axis_angle(q_np, order, use_scipy=use_scipy)
        assert np.abs(rotmat(back) - rotmat(aa)).max() < 1e-9
    small = aa[200:]  # angle < pi: the round trip gives the same vector back
    assert np.abs(quat_to_axis_angle(axis_angle_to_quat(small, order, use_scipy=False), order, use_scipy=False) - small).max() < 1e-12


def test_torch_in_torch_out():
    q = axis_angle_to_quat(torch.tensor([[0.0, 0.0, np.pi / 2]]))
    assert isinstance(q, torch.Tensor)
    assert torch.allclose(q, torch.tensor([[0, 0, np.sin(np.pi / 4), np.cos(np.pi / 4)]], dtype=q.dtype))


def test_too_few_columns(tmp_path):
    make_amass(tmp_path / "short.npz", cols=60)
    with pytest.raises(DataError, match=r"short\.npz: poses has 60 columns, fewer than .* 66"):
        _load(tmp_path / "short.npz")
    assert _load(tmp_path / "short.npz", joints=20).shape == (80,)


def test_folder_concatenates_and_skips_shape_files(tmp_path):
    (tmp_path / "s1").mkdir()
    make_amass(tmp_path / "s1" / "a_poses.npz", T=10)
    make_amass(tmp_path / "s1" / "b_poses.npz", T=7, seed=2)
    np.savez(tmp_path / "s1" / "shape.npz", betas=np.zeros(16))
    with pytest.warns(UserWarning, match="shape.npz"):
        b = _load(tmp_path)
    assert len(b.train) == 17


def test_export_csv_reads_back_all_rows(tmp_path):
    make_amass(tmp_path / "a.npz", T=326)
    q = _load(tmp_path / "a.npz").train.x.reshape(326, 22, 4)
    p = export_quat_csv(tmp_path / "quat.csv", q)
    header = p.read_text().splitlines()[0].split(",")
    assert header[:5] == ["j0_x", "j0_y", "j0_z", "j0_w", "j1_x"] and len(header) == 88
    back = load_data(DataConfig(name="table", path=p, val_fraction=0, test_fraction=0), 0).train.x
    assert back.shape == (326, 88) and torch.allclose(back, q.reshape(326, 88), atol=1e-7)
    p2 = export_quat_csv(tmp_path / "q2.csv", q[..., [3, 0, 1, 2]], order="wxyz")
    assert p2.read_text().startswith("j0_w,j0_x,j0_y,j0_z,j1_w")
