"""Evaluation metrics with known answers: rotation angles between quaternions, the mean-pose baseline, and the
conditional-sample accuracy of label-conditional models."""
from __future__ import annotations

import math

import pytest
import torch

from vaelab.use.metrics import FEATURE_METRICS, conditional_sample_accuracy, quaternion_metrics, rotation_angle_deg


def test_rotation_angle_is_exact_sign_free_and_order_free():
    half = math.radians(10.0) / 2  # 10 degrees about z
    a = torch.tensor([[0.0, 0.0, 0.0, 1.0]], dtype=torch.float64)
    b = torch.tensor([[0.0, 0.0, math.sin(half), math.cos(half)]], dtype=torch.float64)
    assert float(rotation_angle_deg(a, b)) == pytest.approx(10.0, abs=1e-9)
    assert float(rotation_angle_deg(a, -b)) == pytest.approx(10.0, abs=1e-9)  # q and -q: one rotation
    assert float(rotation_angle_deg(a, 3 * b)) == pytest.approx(10.0, abs=1e-9)  # not unit: normalised
    wxyz = lambda q: q[..., [3, 0, 1, 2]]  # noqa: E731
    assert float(rotation_angle_deg(wxyz(a), wxyz(b))) == pytest.approx(10.0, abs=1e-9)
    tiny = torch.tensor([[0.0, 0.0, math.sin(1e-7), math.cos(1e-7)]], dtype=torch.float64)
    assert float(rotation_angle_deg(a, tiny)) == pytest.approx(math.degrees(2e-7), rel=1e-6)  # acos would give 0


def test_quaternion_metrics_and_mean_pose_baseline():
    q = torch.tensor([[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, math.sin(0.1), math.cos(0.1)]])  # 2 frames, 1 joint
    m = quaternion_metrics(q, q.clone())
    assert m["rotation_error_deg"] == pytest.approx(0.0, abs=1e-6)
    assert m["mean_pose_rotation_error_deg"] == pytest.approx(math.degrees(0.1), rel=1e-3)  # halfway: 0.2 rad / 2
    assert FEATURE_METRICS.get("quaternion") is quaternion_metrics


def _template_cvae(templates: torch.Tensor, use_label: bool):
    """A real label-conditional VAE whose decoder puts out the class template (use_label) or ignores the label."""
    from torch import nn

    from vaelab.model.vae import VAE

    k, d = templates.shape
    enc = nn.Sequential(nn.Flatten(), nn.Linear(d + k, 4))
    dec = nn.Linear(2 + k, d)
    with torch.no_grad():
        dec.weight.zero_()
        dec.bias.zero_()
        if use_label:
            dec.weight[:, 2:] = templates.T  # one-hot label -> its template
        else:
            dec.weight[:, :2] = torch.randn(d, 2)  # only z matters
    return VAE(enc, nn.Sequential(dec), latent_shape=(2,), input_shape=(d,), output_activation="identity",
               condition_kind="label", condition_width=k, condition_after=1).eval()


def test_conditional_sample_accuracy_sees_whether_samples_follow_their_label():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y)
    templates = torch.stack([x[:1200][y[:1200] == c].mean(0) for c in range(10)])
    good = conditional_sample_accuracy(_template_cvae(templates, True), x[:1200], y[:1200], x[1200:], y[1200:], per_label=20)
    bad = conditional_sample_accuracy(_template_cvae(templates, False), x[:1200], y[:1200], x[1200:], y[1200:], per_label=20)
    assert good["classifier_test_accuracy"] > 0.85 and good["conditional_sample_accuracy"] == 1.0
    assert bad["conditional_sample_accuracy"] < 0.4 and bad["classifier_test_accuracy"] == good["classifier_test_accuracy"]
    assert good["conditional_sample_accuracy_ratio"] == pytest.approx(1.0 / good["classifier_test_accuracy"])
