import time

import numpy as np
import pytest

from slm_lab.env.clock import Clock


def test_single_env_t_counts_steps_in_episode():
    clock = Clock(max_frame=100, num_envs=1, is_venv=False)
    for _ in range(3):
        clock.tick_step(0, np.array([False]))
    assert (clock.frame, clock.t, clock.epi) == (3, 3, 0)
    clock.tick_step(1, np.array([True]))  # the episode ends: t restarts
    assert (clock.frame, clock.t, clock.epi) == (4, 0, 1)
    clock.tick_step(0, np.array([False]))
    assert (clock.frame, clock.t, clock.epi) == (5, 1, 1)


def test_vector_env_t_counts_vector_steps():
    clock = Clock(max_frame=100, num_envs=4, is_venv=True)
    clock.tick_step(0, np.zeros(4, bool))
    clock.tick_step(2, np.array([True, False, True, False]))
    clock.tick_step(1, np.array([False, False, False, True]))
    assert (clock.frame, clock.t, clock.epi) == (12, 3, 3)


def test_opt_step_and_get():
    before = time.perf_counter()
    clock = Clock(max_frame=10, num_envs=2, is_venv=True)
    clock.tick_opt_step()
    clock.tick_opt_step(4)
    clock.tick_step(0)
    assert clock.get() == 2
    assert clock.get("opt_step") == 5
    assert clock.get("t") == 1
    wall_t = clock.get("wall_t")
    assert 0.0 < wall_t <= time.perf_counter() - before  # the seconds since the clock started
    with pytest.raises(ValueError, match="unknown clock unit"):
        clock.get("epoch")


def test_state_dict_round_trip_continues_wall_t():
    clock = Clock(max_frame=100, num_envs=2, is_venv=True)
    clock.tick_step(1)
    clock.tick_opt_step(3)
    clock.batch_size = 64
    d = clock.state_dict()
    d["wall_t"] = 1000.0  # as if the session had run for 1000 s before the checkpoint
    restored = Clock(max_frame=100, num_envs=2, is_venv=True)
    restored.load_state_dict(d)
    assert (restored.frame, restored.t, restored.epi, restored.opt_step, restored.batch_size) == (
        2,
        1,
        1,
        3,
        64,
    )
    assert 1000.0 <= restored.wall_t < 1001.0


def test_reset_timer_keeps_accumulated_time():
    clock = Clock(max_frame=10, num_envs=1, is_venv=False)
    clock.load_state_dict({**clock.state_dict(), "wall_t": 50.0})
    time.sleep(0.01)
    before = clock.wall_t
    clock.reset_timer()
    after = clock.wall_t
    assert before >= 50.01
    assert before <= after < before + 0.01
