"""Multi-layer perceptron nets."""

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from slm_lab.agent.net.base import net_config
from slm_lab.agent.net.builder import build_mlp_from_spec, init_layers
from slm_lab.agent.net.tails import TailsMixin
from slm_lab.registry import Registry
from slm_lab.spec.schema import MLPNetSpec

__all__ = ["NETS", "MLPNet"]

NETS: Registry[type[nn.Module]] = Registry("net")


@NETS.register("MLPNet")
class MLPNet(TailsMixin):
    """Linear -> [norm] -> activation per ``hid_layers`` width, then one Linear tail per output.

    ``out_dim`` is an int (one tail, a tensor out) or a list (one tail each, a list out). With ``log_std_init`` and
    ``out_dim == [A, A]`` the second output is a learned state-independent log-std parameter instead of a tail.

    Spec example::

        {"type": "MLPNet", "hid_layers": [64, 64], "hid_layers_activation": "tanh", "init_fn": "orthogonal_",
         "clip_grad_val": 0.5, "loss_spec": {"name": "MSELoss"}, "optim_spec": {"name": "Adam", "lr": 3e-4}}
    """

    flat_input = True  # takes (B, D) inputs; multi-dimensional observations are flattened by the algorithm

    def __init__(
        self, net_spec: Mapping[str, Any] | MLPNetSpec, in_dim: int, out_dim: int | list[int]
    ) -> None:
        super().__init__()
        cfg = net_config(net_spec, "MLPNet")
        self.in_dim, self.out_dim = in_dim, out_dim
        self.body = build_mlp_from_spec(cfg, in_dim)
        self._init_tails(cfg.hid_layers[-1] if cfg.hid_layers else in_dim, out_dim, cfg)
        init_layers(self, cfg.init_fn, cfg.hid_layers_activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        return self._tails_forward(self.body(x))
