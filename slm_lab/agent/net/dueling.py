"""Dueling Q-networks (Wang et al. 2016, "Dueling Network Architectures for Deep RL", arXiv:1511.06581).

A dueling head splits Q(s, a) into a state value V(s) and action advantages A(s, a) and recombines them as

    Q(s, a) = V(s) + A(s, a) − mean_a' A(s, a')

Subtracting the mean makes the split identifiable (otherwise any constant could move between V and A) and keeps the
advantages centred, so V learns from every transition whichever action was taken. The head knows nothing about
the body, so the MLP net here and a conv net share it.
"""

from collections.abc import Mapping
from typing import Any

import torch
from loguru import logger
from torch import nn

from slm_lab.agent.net.base import net_config
from slm_lab.agent.net.builder import build_mlp_from_spec, init_layers
from slm_lab.agent.net.mlp import NETS
from slm_lab.errors import SpecError
from slm_lab.spec.schema import DuelingMLPNetSpec

__all__ = ["DuelingHead", "DuelingMLPNet", "check_dueling_out_dim"]


def check_dueling_out_dim(out_dim: Any, net_type: str) -> int:
    """The number of discrete actions, or a SpecError: a dueling net outputs one Q-value per action, so a list of
    output dims (continuous actions, multi-discrete actions or a shared actor-critic) cannot be served."""
    if isinstance(out_dim, bool) or not isinstance(out_dim, int) or out_dim < 1:
        raise SpecError(
            f"agent.net.type: {net_type} outputs one Q-value per discrete action and needs a single positive output "
            f"dim, got {out_dim!r}; use it with a value-based algorithm on a Discrete action space, or pick a "
            "non-dueling net such as MLPNet"
        )
    return out_dim


class DuelingHead(nn.Module):
    """From body features (B, in_dim) to Q-values (B, out_dim) through a V stream (1 unit) and an A stream.

    ``v`` and ``adv`` are plain Linear layers so that the owning net's ``init_layers`` initialises them too.
    """

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        if out_dim < 1:
            raise ValueError(f"DuelingHead needs at least one action, got out_dim={out_dim}")
        self.in_dim, self.out_dim = in_dim, out_dim
        self.v = nn.Linear(in_dim, 1)  # state value V(s)
        self.adv = nn.Linear(in_dim, out_dim)  # raw advantages A(s, ·), centred in forward

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        adv = self.adv(h)
        return self.v(h) + adv - adv.mean(dim=-1, keepdim=True)


@NETS.register("DuelingMLPNet")
class DuelingMLPNet(nn.Module):
    """The MLPNet body (Linear -> [norm] -> activation per ``hid_layers`` width) followed by a :class:`DuelingHead`.

    Takes the MLPNet spec keys ``hid_layers``, ``hid_layers_activation``, ``init_fn``, ``layer_norm`` and
    ``batch_norm``, with the same meaning and the same init. ``out_dim`` must be an int, the number of discrete
    actions; the output is (B, out_dim) Q-values. ``out_layer_activation`` is ignored (with a warning when set):
    squashing Q-values would bound them and an activation after the combination would break
    Q = V + A − mean(A); the reference ignores it too.

    Spec example::

        {"type": "DuelingMLPNet", "hid_layers": [64], "hid_layers_activation": "relu", "init_fn": "xavier_uniform_",
         "clip_grad_val": 10.0, "loss_spec": {"name": "SmoothL1Loss"}, "optim_spec": {"name": "Adam", "lr": 1e-3},
         "update_type": "replace", "update_frequency": 500}
    """

    flat_input = True  # takes (B, D) inputs; multi-dimensional observations are flattened by the algorithm

    def __init__(self, net_spec: Mapping[str, Any] | DuelingMLPNetSpec, in_dim: int, out_dim: int) -> None:
        super().__init__()
        cfg = net_config(net_spec, "DuelingMLPNet")
        self.in_dim, self.out_dim = in_dim, check_dueling_out_dim(out_dim, "DuelingMLPNet")
        out_act = cfg.out_layer_activation
        if out_act is not None and str(out_act).replace("_", "").lower() != "identity":
            logger.warning(
                f"agent.net.out_layer_activation: {out_act!r} is ignored by DuelingMLPNet, which outputs raw "
                "Q-values"
            )
        self.body = build_mlp_from_spec(cfg, in_dim)
        self.head = DuelingHead(cfg.hid_layers[-1] if cfg.hid_layers else in_dim, self.out_dim)
        init_layers(self, cfg.init_fn, cfg.hid_layers_activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))
