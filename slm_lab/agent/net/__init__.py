"""Neural networks: registered net classes, builders and the optimizer-step site."""

from slm_lab.agent.net.base import OptimPair, TrainingChecker, train_step
from slm_lab.agent.net.dueling import DuelingHead, DuelingMLPNet
from slm_lab.agent.net.layers import BatchRenorm1d, LazyBatchRenorm1d
from slm_lab.agent.net.mlp import NETS, MLPNet

__all__ = [
    "NETS",
    "BatchRenorm1d",
    "DuelingHead",
    "DuelingMLPNet",
    "LazyBatchRenorm1d",
    "MLPNet",
    "OptimPair",
    "TrainingChecker",
    "train_step",
]
