import itertools
import math
import pickle

import pytest
import torch

from slm_lab.errors import SpecError
from slm_lab.lib.schedule import (
    LR_SCHEDULER_NAMES,
    LinearToMin,
    LinearToZero,
    VarScheduler,
    build_lr_scheduler,
)


def values_at(spec: dict, frames: list[int]) -> list[float]:
    sched = VarScheduler(spec)
    return [sched.update(f) for f in frames]


def test_none_spec_is_constant_nan():
    for spec in (None, {}):
        sched = VarScheduler(spec)
        assert math.isnan(sched.update(1000))
        assert math.isnan(sched.end_val)


def test_no_decay_constant_and_end_val_defaults_to_start():
    sched = VarScheduler({"name": "no_decay", "start_val": 0.5})
    assert sched.end_val == 0.5
    assert [sched.update(f) for f in (0, 10, 10**9)] == [0.5, 0.5, 0.5]


def test_linear_decay_values():
    spec = {"name": "linear_decay", "start_val": 1.0, "end_val": 0.1, "start_step": 100, "end_step": 1100}
    got = values_at(spec, [0, 100, 350, 600, 1100, 5000])
    assert got == pytest.approx([1.0, 1.0, 0.775, 0.55, 0.1, 0.1])


def test_linear_decay_to_zero_reaches_zero():
    # D2: the reference turned end_val 0 into start_val, so this was a constant 0.01
    spec = {"name": "linear_decay", "start_val": 0.01, "end_val": 0, "start_step": 0, "end_step": 1000}
    sched = VarScheduler(spec)
    assert sched.end_val == 0.0
    assert sched.update(500) == pytest.approx(0.005)
    assert sched.update(1000) == 0.0
    assert sched.update(2000) == 0.0


def test_increasing_linear_schedule_ramps():
    # D2: the PPO LunarLander clip schedule 0.128 -> 0.2 must ramp, not jump to 0.2 at the first frame
    spec = {"name": "linear_decay", "start_val": 0.128, "end_val": 0.2, "start_step": 0, "end_step": 1000}
    frames = list(range(0, 1201, 50))
    got = values_at(spec, frames)
    assert got[0] == pytest.approx(0.128)
    assert values_at(spec, [1])[0] == pytest.approx(0.128 + 0.072 / 1000)
    assert got[10] == pytest.approx(0.164)  # frame 500
    assert all(b >= a for a, b in itertools.pairwise(got))
    assert max(b - a for a, b in itertools.pairwise(got)) < 0.004  # no jump
    assert got[-1] == pytest.approx(0.2)


def test_rate_decay_values():
    spec = {"name": "rate_decay", "start_val": 1.0, "end_val": 0.1, "start_step": 0, "end_step": 2000}
    got = values_at(spec, [0, 100, 1000, 1900, 1999, 2000, 3000])
    # 0.9 per 100 frames; at frame 1999 the value (0.9**19.99 ≈ 0.122) is still above end_val, from 2000 on it is
    # end_val
    expected = [1.0, 0.9, 0.9**10, 0.9**19, 0.9**19.99, 0.1, 0.1]
    assert got == pytest.approx(expected)
    assert values_at({**spec, "end_val": 0.5}, [1000])[0] == 0.5  # 0.9**10 ≈ 0.35 is floored at end_val
    zero = {**spec, "end_val": 0.0}
    assert values_at(zero, [2000])[0] == 0.0


def test_periodic_decay_values():
    spec = {"name": "periodic_decay", "start_val": 1.0, "end_val": 0.2, "start_step": 0, "end_step": 600}
    got = values_at(spec, [0, 300, 450, 600, 900])
    # u = x / 10; value = b + ½(a−b)(1 + cos u)(1 − u/60)
    expected = [
        1.0,
        0.2 + 0.5 * 0.8 * (1 + math.cos(30)) * 0.5,
        0.2 + 0.5 * 0.8 * (1 + math.cos(45)) * 0.25,
        0.2,
        0.2,
    ]
    assert got == pytest.approx(expected)
    dense = values_at(spec, list(range(0, 601, 7)))
    assert min(dense) >= 0.2


def test_eval_mode_returns_end_val_and_back():
    spec = {"name": "linear_decay", "start_val": 1.0, "end_val": 0.05, "start_step": 0, "end_step": 100}
    sched = VarScheduler(spec)
    sched.update(10)
    sched.set_eval(True)
    assert sched.val == 0.05
    assert sched.update(0) == 0.05
    sched.set_eval(False)
    assert sched.val == 1.0  # recomputed at the last frame seen (0)


def test_state_round_trip():
    spec = {"name": "linear_decay", "start_val": 1.0, "end_val": 0.0, "start_step": 0, "end_step": 100}
    sched = VarScheduler(spec)
    sched.update(30)
    restored = VarScheduler(spec)
    restored.load_state_dict(pickle.loads(pickle.dumps(sched.state_dict())))
    assert restored.val == pytest.approx(0.7)
    assert restored.frame == 30


def test_spec_errors():
    with pytest.raises(SpecError, match=r"explore_var_spec\.name.*linear_decay"):
        VarScheduler({"name": "cosine", "start_val": 1.0}, key="agent.algorithm.explore_var_spec")
    with pytest.raises(SpecError, match="end_step is required"):
        VarScheduler({"name": "linear_decay", "start_val": 1.0, "end_val": 0.0})
    with pytest.raises(SpecError, match="start_val"):
        VarScheduler({"name": "linear_decay", "end_val": 0.0, "end_step": 10})


# --- LR schedulers ------------------------------------------------------------------------------------------


def make_optim(lr: float = 1.0) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def lr_after(sched: torch.optim.lr_scheduler.LRScheduler, steps: int) -> float:
    for _ in range(steps):
        sched.optimizer.step()
        sched.step()
    return sched.optimizer.param_groups[0]["lr"]


def test_constant_scheduler():
    sched = build_lr_scheduler(make_optim(0.3), None, frames_per_step=8)
    assert lr_after(sched, 50) == pytest.approx(0.3)


def test_linear_to_zero():
    # n = 1000 // 100 = 10 scheduler steps (one per train() call of 100 frames)
    sched = build_lr_scheduler(make_optim(2.0), {"name": "LinearToZero", "frame": 1000}, frames_per_step=100)
    assert isinstance(sched, LinearToZero)
    assert sched.optimizer.param_groups[0]["lr"] == 2.0
    assert lr_after(sched, 3) == pytest.approx(2.0 * 0.7)
    assert lr_after(sched, 7) == pytest.approx(0.0)
    assert lr_after(sched, 5) == 0.0


def test_linear_to_min():
    spec = {"name": "LinearToMin", "frame": 1000, "min_factor": 0.2}
    sched = build_lr_scheduler(make_optim(1.0), spec, frames_per_step=100)
    assert isinstance(sched, LinearToMin)
    assert lr_after(sched, 5) == pytest.approx(1.0 - 5 * 0.8 / 10)
    assert lr_after(sched, 100) == pytest.approx(0.2)


def test_linear_horizon_at_least_one_step():
    sched = build_lr_scheduler(make_optim(1.0), {"name": "LinearToZero", "frame": 10}, frames_per_step=64)
    assert lr_after(sched, 1) == 0.0


def test_lr_scheduler_state_round_trip():
    spec = {"name": "LinearToMin", "frame": 1000, "min_factor": 0.1}
    sched = build_lr_scheduler(make_optim(1.0), spec, frames_per_step=100)
    lr_after(sched, 4)
    state = pickle.loads(pickle.dumps(sched.state_dict()))
    fresh = build_lr_scheduler(make_optim(1.0), spec, frames_per_step=100)
    fresh.load_state_dict(state)
    assert fresh.last_epoch == 4
    assert lr_after(fresh, 1) == pytest.approx(lr_after(sched, 1))
    # the constant scheduler's state keeps its step count too
    const = build_lr_scheduler(make_optim(), None, frames_per_step=1)
    lr_after(const, 3)
    fresh_const = build_lr_scheduler(make_optim(), None, frames_per_step=1)
    fresh_const.load_state_dict(pickle.loads(pickle.dumps(const.state_dict())))
    assert fresh_const.last_epoch == 3


def test_torch_scheduler_by_name():
    sched = build_lr_scheduler(
        make_optim(1.0), {"name": "StepLR", "step_size": 2, "gamma": 0.5}, frames_per_step=1
    )
    assert isinstance(sched, torch.optim.lr_scheduler.StepLR)
    assert lr_after(sched, 4) == pytest.approx(0.25)


def test_lr_scheduler_errors():
    with pytest.raises(SpecError, match=r"lr_scheduler_spec\.name.*LinearToMin.*LinearToZero.*StepLR"):
        build_lr_scheduler(make_optim(), {"name": "LinearToHalf", "frame": 10}, frames_per_step=1)
    with pytest.raises(SpecError, match="StepLR"):
        build_lr_scheduler(make_optim(), {"name": "StepLR", "stepsize": 2}, frames_per_step=1)
    with pytest.raises(SpecError, match="frame"):
        build_lr_scheduler(make_optim(), {"name": "LinearToZero"}, frames_per_step=1)
    with pytest.raises(SpecError, match="min_factor"):
        build_lr_scheduler(
            make_optim(), {"name": "LinearToMin", "frame": 10, "min_factor": 2}, frames_per_step=1
        )
    assert "ReduceLROnPlateau" not in LR_SCHEDULER_NAMES  # needs a metric at each step
    assert "LambdaLR" not in LR_SCHEDULER_NAMES  # needs a callable, which a JSON spec cannot give
