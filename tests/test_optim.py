import pytest
import torch

from vaelab.core.errors import ConfigError, TrainingError
from vaelab.training.optim import LR_SCHEDULERS, OPTIMIZERS, Stepper, make_optimizer, make_scheduler

SCHEDULER_NAMES = ["constant", "none", "steplr", "multisteplr", "exponential", "cosine", "cyclic", "plateau", "onecycle"]


def _params():
    torch.manual_seed(0)
    return torch.nn.Linear(3, 2)


def _train_step(model, opt):
    opt.zero_grad()
    loss = model(torch.ones(4, 3)).pow(2).mean()
    loss.backward()
    opt.step()
    return float(loss.detach())


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "rmsprop"])
def test_each_optimizer_builds_and_steps(name):
    model = _params()
    opt = make_optimizer(name, model.parameters(), lr=0.01)
    before = model.weight.detach().clone()
    _train_step(model, opt)
    assert not torch.equal(before, model.weight)
    assert opt.param_groups[0]["lr"] == 0.01


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "rmsprop"])
def test_weight_decay_changes_the_update(name):
    weights = []
    for wd in (0.0, 0.5):
        model = _params()
        opt = make_optimizer(name, model.parameters(), lr=0.1, weight_decay=wd)
        assert opt.param_groups[0]["weight_decay"] == wd
        _train_step(model, opt)
        _train_step(model, opt)
        weights.append(model.weight.detach().clone())
    assert not torch.allclose(weights[0], weights[1])


def test_optimizer_kwargs_passed_and_checked():
    opt = make_optimizer("SGD", _params().parameters(), lr=0.1, kwargs={"momentum": 0.9, "nesterov": True})
    assert opt.param_groups[0]["momentum"] == 0.9 and opt.param_groups[0]["nesterov"]
    with pytest.raises(ConfigError, match=r"train\.optimizer\.kwargs\.betaz") as e:
        make_optimizer("adam", _params().parameters(), lr=0.1, kwargs={"betaz": (0.9, 0.99)})
    assert "betas" in str(e.value)
    with pytest.raises(ConfigError, match=r"train\.optimizer\.kwargs\.lr.*train\.lr"):
        make_optimizer("adam", _params().parameters(), lr=0.1, kwargs={"lr": 0.2})
    with pytest.raises(ConfigError, match=r"train\.optimizer\.name.*'adam'"):
        make_optimizer("adan", _params().parameters(), lr=0.1)
    with pytest.raises(ConfigError, match=r"train\.optimizer"):
        make_optimizer("adam", _params().parameters(), lr=-1.0)


def _run(stepper: Stepper, opt, model, epochs, steps, val=None):
    lrs = []
    for epoch in range(epochs):
        for _ in range(steps):
            _train_step(model, opt)
            stepper.step_batch()
            lrs.append(stepper.lrs()[0])
        stepper.step_epoch(None if val is None else val[epoch % len(val)], train_loss=1.0)
        lrs.append(stepper.lrs()[0])
    return lrs


@pytest.mark.parametrize("name", SCHEDULER_NAMES)
def test_each_scheduler_builds_and_steps(name):
    model = _params()
    opt = make_optimizer("sgd", model.parameters(), lr=0.1)
    stepper = make_scheduler(name, opt, {}, epochs=4, steps_per_epoch=5)
    assert stepper.interval in ("batch", "epoch")
    lrs = _run(stepper, opt, model, 4, 5, val=[1.0])
    assert all(lr > 0 for lr in lrs[:-1]) and lrs[-1] >= 0  # cosine reaches eta_min = 0 after the last epoch
    if name in ("constant", "none"):
        assert set(lrs) == {0.1}
    elif name != "plateau":  # plateau waits `patience` epochs
        assert len(set(lrs)) > 1


def test_intervals_and_defaults():
    opt = make_optimizer("adam", _params().parameters(), lr=0.1)
    assert make_scheduler("cyclic", opt, {}, epochs=2, steps_per_epoch=8).interval == "batch"
    opt = make_optimizer("adam", _params().parameters(), lr=0.1)
    assert make_scheduler("onecycle", opt, {}, epochs=2, steps_per_epoch=8).scheduler.total_steps == 16
    opt = make_optimizer("adam", _params().parameters(), lr=0.1)
    s = make_scheduler("cosine", opt, {}, epochs=7, steps_per_epoch=3)
    assert s.interval == "epoch" and s.scheduler.T_max == 7
    opt = make_optimizer("adam", _params().parameters(), lr=0.1)
    cyc = make_scheduler("cyclic", opt, {}, epochs=1, steps_per_epoch=8).scheduler
    assert cyc.base_lrs == [pytest.approx(0.01)] and cyc.max_lrs == [0.1] and not cyc.cycle_momentum
    opt = make_optimizer("sgd", _params().parameters(), lr=0.1, kwargs={"momentum": 0.9})
    assert make_scheduler("cyclic", opt, {}, epochs=1, steps_per_epoch=8).scheduler.cycle_momentum
    assert "cosineannealinglr" in LR_SCHEDULERS and "adam" in OPTIMIZERS


def test_onecycle_holds_final_rate_past_its_end():
    model = _params()
    opt = make_optimizer("adam", model.parameters(), lr=0.1)
    s = make_scheduler("onecycle", opt, {}, epochs=1, steps_per_epoch=4)
    for _ in range(10):
        opt.step()
        s.step_batch()
    assert s.lrs()[0] == pytest.approx(0.1 / 25 / 1e4)


def test_plateau_uses_val_loss_else_train_loss():
    opt = make_optimizer("sgd", _params().parameters(), lr=0.1)
    s = make_scheduler("plateau", opt, {"patience": 0, "factor": 0.5}, epochs=5, steps_per_epoch=1)
    s.step_epoch(1.0)
    s.step_epoch(2.0)  # worse validation loss -> reduce
    assert s.lrs()[0] == pytest.approx(0.05)
    s.step_epoch(None, train_loss=0.5)  # better train loss, no val loss -> keep
    s.step_epoch(None, train_loss=0.9)  # worse -> reduce
    assert s.lrs()[0] == pytest.approx(0.025)
    with pytest.raises(TrainingError):
        s.step_epoch(None)


@pytest.mark.parametrize("name,kwargs", [("steplr", {"step_size": 1, "gamma": 0.5}), ("cyclic", {}),
                                         ("onecycle", {}), ("plateau", {"patience": 0}), ("cosine", {})])
def test_state_dict_round_trip_gives_same_lrs(name, kwargs):
    val = [1.0, 2.0, 3.0]

    def build():
        model = _params()
        opt = make_optimizer("sgd", model.parameters(), lr=0.1)
        return model, opt, make_scheduler(name, opt, kwargs, epochs=6, steps_per_epoch=4)

    model, opt, s = build()
    _run(s, opt, model, 3, 4, val)
    opt_state, sched_state = opt.state_dict(), s.state_dict()
    expected = _run(s, opt, model, 3, 4, val)

    model2, opt2, s2 = build()
    model2.load_state_dict(model.state_dict())
    opt2.load_state_dict(opt_state)
    s2.load_state_dict(sched_state)
    assert _run(s2, opt2, model2, 3, 4, val) == pytest.approx(expected)


def test_scheduler_kwargs_errors_name_the_key():
    opt = make_optimizer("adam", _params().parameters(), lr=0.1)
    with pytest.raises(ConfigError, match=r"train\.scheduler\.kwargs\.stepsize") as e:
        make_scheduler("steplr", opt, {"stepsize": 3}, epochs=3, steps_per_epoch=2)
    assert "step_size" in str(e.value)
    with pytest.raises(ConfigError, match=r"train\.scheduler\.kwargs\.total_steps"):
        make_scheduler("onecycle", opt, {"total_steps": 3}, epochs=3, steps_per_epoch=2)
    with pytest.raises(ConfigError, match=r"train\.scheduler\.kwargs\.gamma"):
        make_scheduler("constant", opt, {"gamma": 0.5}, epochs=3, steps_per_epoch=2)
    with pytest.raises(ConfigError, match=r"train\.scheduler\.name.*'cosine'"):
        make_scheduler("cosin", opt, {}, epochs=3, steps_per_epoch=2)
    with pytest.raises(ConfigError, match=r"train\.scheduler"):
        make_scheduler("onecycle", opt, {"pct_start": 2.0}, epochs=3, steps_per_epoch=2)
