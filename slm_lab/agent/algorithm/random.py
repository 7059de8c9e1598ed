"""The random-action baseline: acts uniformly at random and never learns."""

from typing import Any

import numpy as np
import torch
from gymnasium.vector.utils import batch_space

from slm_lab.agent.algorithm.base import ALGORITHMS, Algorithm
from slm_lab.spec.schema_algorithm import AlgorithmSpec

__all__ = ["Random"]


@ALGORITHMS.register("Random")
class Random(Algorithm):
    """Uniformly random actions from the env's action space, one per env copy; no nets, no learning, so the
    dataframe shows what chance scores on the env. As in the reference, each ``train`` samples the memory and counts
    one optimizer step, with a NaN loss, and the memory trains every step from the first (``training_frequency`` 1,
    ``training_start_step`` 0).

    The action space is seeded from torch's generator, which the session seeds, so a seeded session repeats its
    actions. ``agent.net`` is not read and may be empty.

    Spec example::

        {"name": "Random", "algorithm": {"name": "Random"}, "memory": {"name": "OnPolicyReplay"}, "net": {}}
    """

    learns = False

    def __init__(
        self,
        *,
        spec: dict[str, Any],
        env: Any,
        memory: Any,
        device: torch.device,
        mode: str,
        cfg: AlgorithmSpec,
    ) -> None:
        super().__init__(spec=spec, env=env, memory=memory, device=device, mode=mode, cfg=cfg)
        self.actions = batch_space(env.action_space, env.num_envs)
        self.actions.seed(int(torch.randint(2**31 - 1, ())))

    @staticmethod
    def training_frequency(algorithm_spec: dict[str, Any]) -> int:
        return 1

    @staticmethod
    def memory_algorithm_spec(algorithm_spec: dict[str, Any], memory_spec: dict[str, Any]) -> dict[str, Any]:
        return {**algorithm_spec, "training_frequency": 1, "training_start_step": 0}

    def act(self, state: np.ndarray) -> np.ndarray:
        return np.asarray(self.actions.sample())

    def train(self) -> float:
        self.memory.sample()
        self.clock.tick_opt_step()
        return float("nan")
