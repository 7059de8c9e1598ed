"""Memories: storage of transitions for training."""

from slm_lab.agent.memory.base import MEMORIES, Memory, OnPolicyBatch, ReplayBatch
from slm_lab.agent.memory.onpolicy import OnPolicyBatchReplay

__all__ = ["MEMORIES", "Memory", "OnPolicyBatch", "OnPolicyBatchReplay", "ReplayBatch"]
