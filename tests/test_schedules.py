import numpy as np
import pytest

from vaelab.core.errors import ConfigError
from vaelab.training.schedules import SCHEDULES, make_schedule


def frange_cycle_linear(n_iter, start=0.0, stop=1.0, n_cycle=4, ratio=0.5):
    """Direct port of Fu et al. 2019 (haofuml/cyclical_annealing)."""
    L = np.ones(n_iter) * stop
    period = n_iter / n_cycle
    step = (stop - start) / (period * ratio)
    for c in range(n_cycle):
        v, i = start, 0
        while v <= stop and (int(i + c * period) < n_iter):
            L[int(i + c * period)] = v
            v += step
            i += 1
    return L


@pytest.mark.parametrize("n_iter", [1, 7, 10, 37, 100, 101, 1000])
@pytest.mark.parametrize("n_cycle,ratio", [(4, 0.5), (1, 1.0), (3, 0.3), (4, 1.0), (5, 0.8)])
def test_cyclical_matches_reference(n_iter, n_cycle, ratio):
    sched = make_schedule("cyclical", n_cycles=n_cycle, ratio=ratio)
    ref = frange_cycle_linear(n_iter, n_cycle=n_cycle, ratio=ratio)
    got = [sched(t, n_iter) for t in range(n_iter)]
    np.testing.assert_allclose(got, ref, atol=1e-9)


def test_cyclical_start_stop_and_defaults():
    ref = frange_cycle_linear(50, start=0.2, stop=0.9)
    sched = make_schedule("cyclical", start=0.2, stop=0.9)
    np.testing.assert_allclose([sched(t, 50) for t in range(50)], ref, atol=1e-9)
    s = make_schedule("cyclical")
    assert [s(t, 8) for t in range(8)] == pytest.approx([0, 1, 0, 1, 0, 1, 0, 1])
    assert s(100, 8) == s(7, 8)  # past the end holds the last value


def test_linear():
    s = make_schedule("linear")  # warmup_fraction 0.5
    assert [s(t, 10) for t in (0, 1, 5, 9)] == pytest.approx([0.0, 0.2, 1.0, 1.0])
    s = make_schedule("linear", start=1.0, stop=0.0, warmup_steps=4)
    assert [s(t, 100) for t in (0, 2, 4, 50)] == pytest.approx([1.0, 0.5, 0.0, 0.0])
    s = make_schedule("linear", warmup_fraction=0.0)
    assert s(0, 10) == 1.0


def test_constant():
    assert make_schedule("constant")(3, 10) == 1.0
    assert make_schedule("constant", value=0.25)(0, 1) == 0.25


def test_registry_names():
    assert set(SCHEDULES.names()) == {"constant", "linear", "cyclical"}


@pytest.mark.parametrize(
    "kind,params,needle",
    [
        ("cyclical", {"n_cycle": 4}, "loss.kl_schedule.n_cycle"),
        ("cyclical", {"ratio": 0.0}, "loss.kl_schedule.ratio"),
        ("cyclical", {"ratio": 1.5}, "loss.kl_schedule.ratio"),
        ("cyclical", {"n_cycles": 0}, "loss.kl_schedule.n_cycles"),
        ("cyclical", {"n_cycles": 2.5}, "loss.kl_schedule.n_cycles"),
        ("linear", {"warmup_fraction": 2.0}, "loss.kl_schedule.warmup_fraction"),
        ("linear", {"warmup_steps": -1}, "loss.kl_schedule.warmup_steps"),
        ("linear", {"warmup_steps": 3, "warmup_fraction": 0.1}, "not both"),
        ("constant", {"value": "x"}, "loss.kl_schedule.value"),
        ("cosine", {}, "loss.kl_schedule.kind"),
    ],
)
def test_errors_name_the_field(kind, params, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        make_schedule(kind, **params)


def test_unknown_param_lists_valid_ones():
    with pytest.raises(ConfigError) as e:
        make_schedule("cyclical", cycles=3)
    assert "n_cycles, ratio, start, stop" in str(e.value)
