"""Action policies: from a batch of net outputs to a batch of actions for all env copies (contract §6.3).

Every policy acts on the whole vector of env copies in one call. ε / τ for the exploring policies is the
algorithm's ``explore_var``.
"""

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from slm_lab.lib.distribution import make_pd
from slm_lab.registry import Registry

__all__ = ["ACTION_POLICIES", "ActionPolicy"]

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
