"""Action policies: from a batch of net outputs to a batch of actions for all env copies.

Every policy acts on the whole vector of env copies in one call. ε / τ for the exploring policies is the
algorithm's ``explore_var``. The exploring policies draw from torch's RNG on the net output's device, so a seeded
session acts reproducibly, and in eval/enjoy they get the scheduler's ``end_val`` (D11).
"""

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from slm_lab.errors import SpecError
from slm_lab.lib.distribution import Categorical, make_pd
from slm_lab.registry import Registry

__all__ = ["ACTION_POLICIES", "TAU_MIN", "ActionPolicy", "boltzmann", "epsilon_greedy"]

# Boltzmann temperatures are floored here: a schedule that decays τ to 0 then acts greedily (exact ties are broken
# at random by the sampling noise) instead of dividing by zero; a negative τ, which would prefer the worst
# actions, is floored too.
TAU_MIN = 1e-8

# (pdtype, pdparam, explore_var, action_space, num_envs) -> actions tensor (N, ...) or numpy
ActionPolicy = Callable[[str, Any, float, Any, int], torch.Tensor | np.ndarray]
ACTION_POLICIES: Registry[ActionPolicy] = Registry("action policy")


@ACTION_POLICIES.register("default")
def default_policy(
    pdtype: str, pdparam: Any, explore_var: float, action_space: Any, num_envs: int
) -> torch.Tensor:
    """Sample the action distribution built from the net output."""
    return make_pd(pdtype, pdparam).sample()


@ACTION_POLICIES.register("random")
def random_policy(
    pdtype: str, pdparam: Any, explore_var: float, action_space: Any, num_envs: int
) -> np.ndarray:
    """Uniformly random actions from the env's action space, one per env copy."""
    return np.stack([np.asarray(action_space.sample()) for _ in range(num_envs)])


def _discrete_q(name: str, pdparam: Any, explore_var: float, action_space: Any) -> torch.Tensor:
    """The (N, n) net output of a discrete policy, after checking the space, the shape and ``explore_var``."""
    if not isinstance(action_space, spaces.Discrete) or not isinstance(pdparam, torch.Tensor):
        raise SpecError(
            f"agent.algorithm.action_policy: {name} needs a Discrete action space and one (N, n) tensor of "
            f"Q-values/logits, got action space {action_space!r} and {type(pdparam).__name__} net output; use "
            "'default' for other action spaces"
        )
    if pdparam.shape[-1] != action_space.n:
        raise SpecError(
            f"agent.algorithm.action_policy: {name} got a net output of shape {tuple(pdparam.shape)} for "
            f"{action_space.n} actions; the last dim must be the number of actions"
        )
    if math.isnan(explore_var):
        raise SpecError(
            f"agent.algorithm.action_policy: {name} needs agent.algorithm.explore_var_spec for its "
            f"{'ε' if name == 'epsilon_greedy' else 'τ'}"
        )
    return pdparam


@ACTION_POLICIES.register("epsilon_greedy")
def epsilon_greedy(
    pdtype: str, pdparam: Any, explore_var: float, action_space: Any, num_envs: int
) -> torch.Tensor:
    """Per env copy: a uniformly random action with probability ε = ``explore_var``, else argmax of the net output.

    All copies are decided in one vectorised draw. ε ≤ 0 is pure greedy (and draws nothing); ε ≥ 1 is pure
    random. The greedy branch is the argmax whatever ``pdtype`` is, ties going to the first action. A random draw
    may land on the greedy action, so the greedy action is taken with probability 1 − ε + ε/n. Returns (N,) int64.
    """
    q = _discrete_q("epsilon_greedy", pdparam, explore_var, action_space)
    greedy = q.argmax(-1)
    if explore_var <= 0.0:
        return greedy
    shape, device = greedy.shape, greedy.device
    explore = torch.rand(shape, device=device) < explore_var
    return torch.where(explore, torch.randint(q.shape[-1], shape, device=device), greedy)


@ACTION_POLICIES.register("boltzmann")
def boltzmann(
    pdtype: str, pdparam: Any, explore_var: float, action_space: Any, num_envs: int
) -> torch.Tensor:
    """Sample a ~ softmax(pdparam / τ), τ = ``explore_var`` floored at :data:`TAU_MIN`, for every env copy at once.

    Always a Categorical over the tempered net output, whatever ``pdtype`` is (an ``Argmax`` pdtype, the DQN
    default, would otherwise make this greedy for any τ). Large τ approaches uniform, small τ approaches greedy.
    Returns (N,) int64.
    """
    q = _discrete_q("boltzmann", pdparam, explore_var, action_space)
    return Categorical(q / max(explore_var, TAU_MIN)).sample()
