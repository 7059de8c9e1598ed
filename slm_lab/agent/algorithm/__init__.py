"""Algorithms, registered by the class names that specs use in ``agent.algorithm.name``."""

from slm_lab.agent.algorithm.actor_critic import ActorCritic
from slm_lab.agent.algorithm.base import ALGORITHMS, Algorithm
from slm_lab.agent.algorithm.ppo import PPO

__all__ = ["ALGORITHMS", "PPO", "ActorCritic", "Algorithm"]
