"""Memories: storage of transitions for training."""

from slm_lab.agent.memory.base import MEMORIES, Memory, OnPolicyBatch, ReplayBatch
from slm_lab.agent.memory.onpolicy import OnPolicyBatchReplay, OnPolicyCrossEntropy, OnPolicyReplay
from slm_lab.agent.memory.replay import PrioritizedReplay, Replay
from slm_lab.agent.memory.sampler import PrioritizedSampler, Sampler, UniformSampler
from slm_lab.agent.memory.storage import CircularStorage
from slm_lab.agent.memory.sum_tree import SumTree

__all__ = [
    "MEMORIES",
    "CircularStorage",
    "Memory",
    "OnPolicyBatch",
    "OnPolicyBatchReplay",
    "OnPolicyCrossEntropy",
    "OnPolicyReplay",
    "PrioritizedReplay",
    "PrioritizedSampler",
    "Replay",
    "ReplayBatch",
    "Sampler",
    "SumTree",
    "UniformSampler",
]
