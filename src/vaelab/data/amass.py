"""AMASS motion capture (seed 000): SMPL+H axis-angle poses -> unit quaternions, one frame per sample.

`poses` (T, 156) holds 52 joints x 3 axis-angle values; the first J joints (default 22: root + 21 body joints,
SMPL order pelvis ... right_wrist) are used. Output column 4j+k = joint j, component k in the chosen order
("xyzw", scalar last, default; or "wxyz"). Sign canonicalised so w >= 0 (q and -q are the same rotation).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from vaelab.data.base import ARRAY_READ_ERRORS, DATASETS, ArrayData, Options, Source, require_path
from vaelab.core.errors import DataError, VaelabWarning

Order = Literal["xyzw", "wxyz"]

try:  # scipy's Rotation is the well-tested path; the numpy fallback below is exact to float64 too
    from scipy.spatial.transform import Rotation
except ImportError:  # pragma: no cover - scipy comes with scikit-learn
    Rotation = None


class AmassOptions(Options):
    joints: int = Field(22, ge=1, le=52, description="use the first J joints (poses[:, :3J])")
    order: Order = Field("xyzw", description="quaternion component order")


def _as_numpy(a) -> tuple[np.ndarray, bool]:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().double().numpy(), True
    return np.asarray(a, dtype=np.float64), False


def _canonical(q: np.ndarray) -> np.ndarray:
    """xyzw quaternions with w >= 0."""
    return np.where(q[..., 3:4] < 0, -q, q)


def _aa_to_quat_np(aa: np.ndarray) -> np.ndarray:
    """(M, 3) rotation vectors -> (M, 4) xyzw; sin(a/2)/a from its Taylor series near a = 0."""
    a = np.linalg.norm(aa, axis=-1, keepdims=True)
    small = a < 1e-4
    a2 = a * a
    safe = np.where(small, 1.0, a)
    k = np.where(small, 0.5 - a2 / 48.0 + a2 * a2 / 3840.0, np.sin(safe / 2) / safe)
    return np.concatenate([aa * k, np.cos(a / 2)], axis=-1)


def _quat_to_aa_np(q: np.ndarray) -> np.ndarray:
    """(M, 4) xyzw -> (M, 3) rotation vectors with angle in [0, pi]."""
    q = _canonical(q / np.linalg.norm(q, axis=-1, keepdims=True))
    v, w = q[..., :3], q[..., 3:4]
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    small = n < 1e-6
    safe = np.where(small, 1.0, n)
    ws = np.where(small, w, 1.0)  # w ~ 1 where n is small
    k = np.where(small, 2.0 / ws - 2.0 * n * n / (3.0 * ws**3), 2.0 * np.arctan2(n, w) / safe)
    return v * k


def axis_angle_to_quat(aa, order: Order = "xyzw", *, use_scipy: bool = True):
    """(..., 3) axis-angle -> (..., 4) unit quaternions with w >= 0 (numpy in -> numpy, torch in -> torch)."""
    arr, is_torch = _as_numpy(aa)
    if arr.shape[-1:] != (3,):
        raise DataError(f"axis-angle arrays end in 3 values, got shape {arr.shape}")
    flat = arr.reshape(-1, 3)
    if use_scipy and Rotation is not None and len(flat):
        q = Rotation.from_rotvec(flat).as_quat()  # xyzw
    else:
        q = _aa_to_quat_np(flat)
    q = _canonical(q)
    if order == "wxyz":
        q = q[:, [3, 0, 1, 2]]
    q = q.reshape(*arr.shape[:-1], 4)
    return torch.from_numpy(q) if is_torch else q


def quat_to_axis_angle(q, order: Order = "xyzw", *, use_scipy: bool = True):
    """(..., 4) quaternions in `order` -> (..., 3) axis-angle (angle in [0, pi])."""
    arr, is_torch = _as_numpy(q)
    if arr.shape[-1:] != (4,):
        raise DataError(f"quaternion arrays end in 4 values, got shape {arr.shape}")
    flat = arr.reshape(-1, 4)
    if order == "wxyz":
        flat = flat[:, [1, 2, 3, 0]]
    if use_scipy and Rotation is not None and len(flat):
        aa = Rotation.from_quat(_canonical(flat)).as_rotvec()
    else:
        aa = _quat_to_aa_np(flat)
    aa = aa.reshape(*arr.shape[:-1], 3)
    return torch.from_numpy(aa) if is_torch else aa


def quat_columns(joints: int, order: Order = "xyzw") -> list[str]:
    return [f"j{j}_{c}" for j in range(joints) for c in order]


def export_quat_csv(path: str | Path, quats, order: Order = "xyzw") -> Path:
    """Write (T, J, 4) quaternions (already in `order`) as a CSV with header j{j}_{component}."""
    q, _ = _as_numpy(quats)
    if q.ndim != 3 or q.shape[-1] != 4:
        raise DataError(f"quats must be (T, J, 4), got {q.shape}")
    path = Path(path)
    header = ",".join(quat_columns(q.shape[1], order))
    np.savetxt(path, q.reshape(len(q), -1), delimiter=",", header=header, comments="", fmt="%.9g")
    return path


def read_poses(path: Path, joints: int) -> np.ndarray | None:
    """poses[:, :3J] of one AMASS .npz as (T, J, 3); None if the file has no `poses` (e.g. shape.npz)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if "poses" not in z.files:
                return None
            poses = z["poses"]
    except ARRAY_READ_ERRORS as e:
        raise DataError(f"{path}: cannot read AMASS .npz ({type(e).__name__}: {e})") from None
    if poses.ndim != 2 or not np.issubdtype(poses.dtype, np.floating):
        raise DataError(f"{path}: poses is {poses.dtype} {poses.shape}, expected floats of shape (frames, 3 * joints)")
    if len(poses) == 0:
        raise DataError(f"{path}: poses has 0 frames; give a motion file with at least one frame")
    if poses.shape[1] < 3 * joints:
        raise DataError(
            f"{path}: poses has {poses.shape[1]} columns, fewer than 3 * joints = {3 * joints}; lower data.options.joints"
        )
    used = poses[:, : 3 * joints]
    bad = ~np.isfinite(used).all(axis=1)
    if bad.any():
        raise DataError(f"{path}: {int(bad.sum())} of {len(used)} frames hold NaN or inf in the first {joints} joints' "
                        f"poses (first: frame {int(np.argmax(bad))}); clean the file or drop those frames")
    return used.reshape(len(poses), joints, 3)


def load_amass(path: Path | None, options: AmassOptions) -> Source:
    path = require_path(path, "amass", "an AMASS .npz file or a folder of them")
    files = sorted(path.rglob("*.npz")) if path.is_dir() else [path]
    parts = []
    for f in files:
        aa = read_poses(f, options.joints)
        if aa is None:
            if not path.is_dir():
                raise DataError(f"{f}: no 'poses' array; not an AMASS motion file")
            warnings.warn(f"{f}: no 'poses' array, skipped", VaelabWarning, stacklevel=2)
            continue
        parts.append(aa)
    if not parts:
        raise DataError(f"{path}: no AMASS motion files (.npz with a 'poses' array) found")
    aa = np.concatenate(parts)  # (T, J, 3)
    q = axis_angle_to_quat(aa, options.order)  # (T, J, 4)
    x = torch.from_numpy(q.reshape(len(q), -1).astype(np.float32))  # (T, 4J)
    return Source({"all": ArrayData(x)}, (-1.0, 1.0), None, None)


DATASETS.register(
    "amass",
    load_amass,
    options=AmassOptions,
    features="quaternion",  # every 4 consecutive values are one joint's rotation (vaelab evaluate's angle metric)
    doc="AMASS SMPL+H .npz (file or folder): first J joints as unit quaternions, (4J,) per frame, range (-1,1)",
)
