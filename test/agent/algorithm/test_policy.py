"""Exploring action policies: epsilon_greedy and boltzmann over a batch of env copies."""

import math

import pytest
import torch
from gymnasium import spaces

from slm_lab.agent.algorithm.policy import ACTION_POLICIES, boltzmann, epsilon_greedy
from slm_lab.errors import SpecError

N, A = 20_000, 4
SPACE = spaces.Discrete(A)


def greedy(q: torch.Tensor) -> torch.Tensor:
    return q.argmax(-1)


def test_registered() -> None:
    assert ACTION_POLICIES.get("epsilon_greedy") is epsilon_greedy
    assert ACTION_POLICIES.get("boltzmann") is boltzmann


def test_epsilon_zero_is_argmax() -> None:
    q = torch.randn(64, A)
    actions = epsilon_greedy("Argmax", q, 0.0, SPACE, 64)
    assert actions.dtype == torch.int64 and actions.shape == (64,)
    assert torch.equal(actions, greedy(q))


def test_epsilon_one_is_near_uniform() -> None:
    torch.manual_seed(0)
    q = torch.zeros(N, A)
    q[:, 2] = 1.0  # a strong greedy preference that must be ignored
    counts = torch.bincount(epsilon_greedy("Argmax", q, 1.0, SPACE, N), minlength=A).float() / N
    assert torch.allclose(counts, torch.full((A,), 1 / A), atol=0.02), counts


def test_epsilon_half_with_two_actions_is_greedy_three_quarters() -> None:
    torch.manual_seed(1)
    q = torch.randn(N, 2)
    actions = epsilon_greedy("Argmax", q, 0.5, spaces.Discrete(2), N)
    frac = (actions == greedy(q)).float().mean().item()
    assert abs(frac - 0.75) < 0.015, frac  # 1 − ε + ε/n; 5σ ≈ 0.015 at N = 20000


def test_boltzmann_tiny_tau_is_argmax() -> None:
    torch.manual_seed(0)
    q = torch.randn(256, A)
    assert torch.equal(boltzmann("Categorical", q, 1e-4, SPACE, 256), greedy(q))
    assert torch.equal(boltzmann("Argmax", q, 0.0, SPACE, 256), greedy(q))  # τ = 0 is floored, not a crash


def test_boltzmann_large_tau_is_near_uniform_and_tau_one_matches_softmax() -> None:
    torch.manual_seed(0)
    q = torch.tensor([[0.0, 1.0, 2.0, 3.0]]).expand(N, A)
    counts = torch.bincount(boltzmann("Argmax", q, 1e4, SPACE, N), minlength=A).float() / N
    assert torch.allclose(counts, torch.full((A,), 1 / A), atol=0.02), counts
    counts = torch.bincount(boltzmann("Argmax", q, 1.0, SPACE, N), minlength=A).float() / N
    assert torch.allclose(counts, torch.softmax(q[0], -1), atol=0.02), counts


@pytest.mark.parametrize("policy", [epsilon_greedy, boltzmann])
def test_seeded_reproducibility(policy) -> None:
    q = torch.randn(32, A)
    torch.manual_seed(7)
    first = policy("Categorical", q, 0.5, SPACE, 32)
    torch.manual_seed(7)
    assert torch.equal(first, policy("Categorical", q, 0.5, SPACE, 32))


@pytest.mark.parametrize("policy", [epsilon_greedy, boltzmann])
def test_non_discrete_spaces_and_outputs_are_spec_errors(policy) -> None:
    box = spaces.Box(-1.0, 1.0, (2,))
    with pytest.raises(SpecError, match=r"agent\.algorithm\.action_policy: .* Discrete action space"):
        policy("Normal", [torch.zeros(3, 2), torch.zeros(3, 2)], 0.1, box, 3)
    with pytest.raises(SpecError, match=r"agent\.algorithm\.action_policy"):
        policy("Categorical", [torch.zeros(3, A)], 0.1, SPACE, 3)
    with pytest.raises(SpecError, match=r"last dim must be the number of actions"):
        policy("Categorical", torch.zeros(3, A + 1), 0.1, SPACE, 3)
    with pytest.raises(SpecError, match=r"explore_var_spec"):
        policy("Categorical", torch.zeros(3, A), math.nan, SPACE, 3)
