import io
import random

import numpy as np
import pytest
import torch

from slm_lab.errors import SpecError
from slm_lab.lib.seed import get_rng_state, session_seed, set_global_seed, set_rng_state


def draws() -> tuple[float, np.ndarray, torch.Tensor]:
    return random.random(), np.random.rand(3), torch.rand(3)


def test_session_seed():
    spec = {"meta": {"random_seed": 42, "trial": 2, "session": 3}}
    assert session_seed(spec) == 42 + 200_000 + 3_000
    assert session_seed({"meta": {"random_seed": 42, "trial": -1, "session": -1}}) == 42
    assert session_seed({"meta": {"random_seed": 7.0}}) == 7  # a YAML float seed is fine when integral
    with pytest.raises(SpecError, match=r"meta\.random_seed"):
        session_seed({"meta": {"random_seed": None}})
    with pytest.raises(SpecError, match=r"meta\.random_seed"):
        session_seed({"meta": {"random_seed": 1.5}})


def test_set_global_seed_reproduces_draws():
    set_global_seed(123)
    first = draws()
    set_global_seed(123)
    second = draws()
    assert first[0] == second[0]
    assert np.array_equal(first[1], second[1])
    assert torch.equal(first[2], second[2])
    set_global_seed(124)
    assert not torch.equal(draws()[2], first[2])


def test_large_seed_is_accepted():
    set_global_seed(2**40 + 5)  # numpy gets it modulo 2**32
    a = np.random.rand()
    set_global_seed(2**40 + 5)
    assert np.random.rand() == a


def test_rng_state_round_trip_through_torch_save():
    set_global_seed(7)
    draws()
    buf = io.BytesIO()
    torch.save(get_rng_state(), buf)
    expected = draws()
    draws()  # move every generator on
    buf.seek(0)
    set_rng_state(torch.load(buf, weights_only=True))
    got = draws()
    assert got[0] == expected[0]
    assert np.array_equal(got[1], expected[1])
    assert torch.equal(got[2], expected[2])


def test_rng_state_keeps_numpy_gaussian_cache():
    set_global_seed(1)
    np.random.standard_normal()  # legacy Box-Muller caches the second value
    state = get_rng_state()
    expected = np.random.standard_normal()
    set_rng_state(state)
    assert np.random.standard_normal() == expected
