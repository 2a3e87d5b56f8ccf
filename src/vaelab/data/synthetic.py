"""Deterministic synthetic stand-ins for data that cannot be shipped: an image folder and an AMASS clip.

`make_shapes` writes coloured shapes into class subfolders (what seed 001's ImageFolder expects);
`make_amass` writes one AMASS-format .npz (SMPL+H axis-angle `poses` (T, 156) and the other keys).
Both depend only on their arguments: the same seed gives the same pixels and the same arrays.
"""
from __future__ import annotations

import math

from pathlib import Path

import numpy as np

from vaelab.core.errors import ConfigError

SHAPES = ("circle", "square", "triangle")
SMPLH_JOINTS = 52  # poses columns = 3 * 52 = 156


def _shape_image(kind: str, width: int, height: int, rng: np.random.Generator):
    from PIL import Image, ImageDraw

    bg = tuple(int(v) for v in rng.integers(0, 60, 3))
    fg = tuple(int(v) for v in rng.integers(90, 256, 3))
    img = Image.new("RGB", (width, height), bg)
    draw = ImageDraw.Draw(img)
    side = min(width, height)
    r = rng.uniform(0.18, 0.34) * side  # half-size of the shape
    cx = rng.uniform(r, width - r)
    cy = rng.uniform(r, height - r)
    if kind == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
    elif kind == "square":
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fg)
    else:
        a = rng.uniform(0, 2 * np.pi)
        pts = [(cx + r * np.cos(a + k * 2 * np.pi / 3), cy + r * np.sin(a + k * 2 * np.pi / 3)) for k in range(3)]
        draw.polygon(pts, fill=fg)
    return img


def make_shapes(
    folder: str | Path, *, per_class: int = 200, width: int = 48, height: int = 40, seed: int = 0,
    classes: tuple[str, ...] = SHAPES,
) -> Path:
    """Write `per_class` PNGs of each shape into folder/<shape>/NNNNN.png; returns the folder.

    The images are not square (default 48x40) so the loader's pad-to-square step is exercised.
    """
    if not 1 <= per_class <= 100_000:
        raise ConfigError(f"per_class must be in 1..100,000 (a stand-in data set, one PNG per image), got {per_class}")
    if not (8 <= width <= 4096 and 8 <= height <= 4096):
        raise ConfigError(f"width and height must be in 8..4096 pixels, got {width}x{height}")
    unknown = [c for c in classes if c not in SHAPES]
    if unknown:
        raise ConfigError(f"unknown shape class {unknown[0]!r}; choose from {', '.join(SHAPES)}")
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    for kind in classes:
        sub = folder / kind
        sub.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            _shape_image(kind, width, height, rng).save(sub / f"{i:05d}.png", optimize=False)
    return folder


def synthetic_poses(frames: int = 326, *, seed: int = 0, fps: float = 120.0, amplitude: float = 1.0) -> np.ndarray:
    """(frames, 156) smooth axis-angle poses: each joint rotates about a fixed axis by a sum of two sinusoids
    around a fixed rest pose.

    amplitude scales the motion around the rest pose (not the rest pose): 1 gives angles below ~pi/2 for body
    joints and ~pi for the root, so both small- and large-angle quaternions appear; hand joints (22..51) move
    little, as in real captures. A real clip of someone standing or gesturing moves far less: at 0.03 the
    quaternion components vary about 35x less than at 1 (`vaelab data make-amass --amplitude 0.03`).
    """
    if not 1 <= frames <= 100_000:
        raise ConfigError(f"frames must be in 1..100,000 (the seed's clip has 326), got {frames}")
    if not (math.isfinite(fps) and fps > 0 and math.isfinite(amplitude) and amplitude >= 0):
        raise ConfigError(f"fps must be a finite number > 0 and amplitude finite and >= 0, got {fps} and {amplitude}")
    if not amplitude >= 0:
        raise ConfigError(f"amplitude must be >= 0 (1 = the default motion, 0 = a still pose), got {amplitude}")
    rng = np.random.default_rng(seed)
    t = np.arange(frames)[:, None] / fps  # (T, 1)
    axes = rng.normal(size=(SMPLH_JOINTS, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)  # (52, 3) unit axes
    amp = np.where(np.arange(SMPLH_JOINTS) < 22, rng.uniform(0.2, 0.7, SMPLH_JOINTS), rng.uniform(0.02, 0.1, SMPLH_JOINTS))
    amp[0] = 1.4  # the root (pelvis) turns furthest
    freq = rng.uniform(0.5, 2.0, (2, SMPLH_JOINTS))  # Hz, like a walking/running gait
    phase = rng.uniform(0, 2 * np.pi, (2, SMPLH_JOINTS))
    angle = amplitude * amp * (0.7 * np.sin(2 * np.pi * freq[0] * t + phase[0]) + 0.3 * np.sin(2 * np.pi * freq[1] * t + phase[1]))
    offset = rng.uniform(-0.3, 0.3, SMPLH_JOINTS)  # a rest pose that is not the identity
    poses = (angle + offset)[:, :, None] * axes[None]  # (T, 52, 3)
    return poses.reshape(frames, 3 * SMPLH_JOINTS)


def make_amass(path: str | Path, *, frames: int = 326, seed: int = 0, fps: float = 120.0, amplitude: float = 1.0) -> Path:
    """Write one AMASS-format .npz: poses (T,156), trans (T,3), betas (16,), mocap_framerate, gender, dmpls (T,8).

    amplitude: motion around the rest pose, see `synthetic_poses` (0.03 for a low-motion clip)."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ConfigError(f"{path}: the AMASS file name must end in .npz")
    rng = np.random.default_rng(seed + 1)
    poses = synthetic_poses(frames, seed=seed, fps=fps, amplitude=amplitude)
    t = np.arange(frames)[:, None] / fps
    trans = np.concatenate([np.sin(t), 0.9 + 0.02 * np.sin(6 * t), 1.5 * t], axis=1)  # (T, 3) metres, walking forward
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:  # np.savez adds ".npz" to a bare str path; a file object keeps the name as given
        np.savez(
            f,
            poses=poses.astype(np.float64),
            trans=trans.astype(np.float64),
            betas=rng.normal(0, 1, 16).astype(np.float64),
            mocap_framerate=np.array(fps),
            gender=np.array("male"),
            dmpls=rng.normal(0, 0.1, (frames, 8)).astype(np.float64),
        )
    return path
