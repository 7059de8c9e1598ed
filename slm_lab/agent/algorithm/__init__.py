"""Algorithms, registered by the class names that specs use in ``agent.algorithm.name``."""

from slm_lab.agent.algorithm.actor_critic import ActorCritic
from slm_lab.agent.algorithm.base import ALGORITHMS, Algorithm
from slm_lab.agent.algorithm.crossq import CrossQ
from slm_lab.agent.algorithm.dqn import DQN, DoubleDQN, DQNBase, VanillaDQN
from slm_lab.agent.algorithm.policy_gradient import PolicyGradient
from slm_lab.agent.algorithm.ppo import PPO
from slm_lab.agent.algorithm.random import Random
from slm_lab.agent.algorithm.reinforce import Reinforce
from slm_lab.agent.algorithm.sac import SoftActorCritic
from slm_lab.agent.algorithm.sarsa import SARSA
from slm_lab.agent.algorithm.self_imitation import SelfImitation
from slm_lab.agent.algorithm.sil import PPOSIL, SIL
from slm_lab.agent.algorithm.value_based import ValueBased

__all__ = [
    "ALGORITHMS",
    "DQN",
    "PPO",
    "PPOSIL",
    "SARSA",
    "SIL",
    "ActorCritic",
    "Algorithm",
    "CrossQ",
    "DQNBase",
    "DoubleDQN",
    "PolicyGradient",
    "Random",
    "Reinforce",
    "SelfImitation",
    "SoftActorCritic",
    "ValueBased",
    "VanillaDQN",
]
