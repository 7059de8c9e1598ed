"""Neural networks: registered net classes, builders and the optimizer-step site."""

from slm_lab.agent.net.arc import build_arc, load_arc
from slm_lab.agent.net.base import OptimPair, TrainingChecker, train_step
from slm_lab.agent.net.conv import ConvNet, DuelingConvNet
from slm_lab.agent.net.dueling import DuelingHead, DuelingMLPNet
from slm_lab.agent.net.layers import (
    BatchRenorm1d,
    Concat,
    LazyBatchRenorm1d,
    LazyWeightNormLinear,
    WeightNormLinear,
)
from slm_lab.agent.net.mlp import NETS, MLPNet
from slm_lab.agent.net.recurrent import RecurrentNet
from slm_lab.agent.net.torcharc_net import TorchArcNet

__all__ = [
    "NETS",
    "BatchRenorm1d",
    "Concat",
    "ConvNet",
    "DuelingConvNet",
    "DuelingHead",
    "DuelingMLPNet",
    "LazyBatchRenorm1d",
    "LazyWeightNormLinear",
    "MLPNet",
    "OptimPair",
    "RecurrentNet",
    "TorchArcNet",
    "TrainingChecker",
    "WeightNormLinear",
    "build_arc",
    "load_arc",
    "train_step",
]
