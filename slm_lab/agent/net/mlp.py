"""Multi-layer perceptron nets."""

from typing import Any

import torch
from torch import nn

from slm_lab.agent.net.builder import build_mlp_from_spec, build_tails, get_activation, init_layers
from slm_lab.registry import Registry

__all__ = ["NETS", "MLPNet"]

NETS: Registry[type[nn.Module]] = Registry("net")


@NETS.register("MLPNet")
class MLPNet(nn.Module):
    """Linear -> [norm] -> activation per ``hid_layers`` width, then one Linear tail per output.

    ``out_dim`` is an int (one tail, a tensor out) or a list (one tail each, a list out). With ``log_std_init`` and
    ``out_dim == [A, A]`` the second output is a learned state-independent log-std parameter instead of a tail.

    Spec example::

        {"type": "MLPNet", "hid_layers": [64, 64], "hid_layers_activation": "tanh", "init_fn": "orthogonal_",
         "clip_grad_val": 0.5, "loss_spec": {"name": "MSELoss"}, "optim_spec": {"name": "Adam", "lr": 3e-4}}
    """

    flat_input = True  # takes (B, D) inputs; multi-dimensional observations are flattened by the algorithm

    def __init__(self, net_spec: dict[str, Any], in_dim: int, out_dim: int | list[int]) -> None:
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        hid_layers: list[int] = list(net_spec["hid_layers"])
        activation: str = net_spec["hid_layers_activation"]
        self.body = build_mlp_from_spec(net_spec, in_dim)
        body_dim = hid_layers[-1] if hid_layers else in_dim
        log_std_init = net_spec.get("log_std_init")
        self.log_std: nn.Parameter | None = None
        if (
            log_std_init is not None
            and isinstance(out_dim, list)
            and len(out_dim) == 2
            and out_dim[0] == out_dim[1]
        ):
            self.tails = build_tails(body_dim, out_dim[0])
            self.log_std = nn.Parameter(torch.full((out_dim[0],), float(log_std_init)))
        else:
            self.tails = build_tails(body_dim, out_dim)
        out_act = net_spec.get("out_layer_activation")
        acts = out_act if isinstance(out_act, list) else [out_act] * len(self.tails)
        self.out_acts = nn.ModuleList(get_activation(a, "agent.net.out_layer_activation") for a in acts)
        self._single = len(self.tails) == 1 and self.log_std is None
        init_layers(self, net_spec.get("init_fn"), activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        h = self.body(x)
        if self._single:
            return self.out_acts[0](self.tails[0](h))
        outs = [act(tail(h)) for tail, act in zip(self.tails, self.out_acts, strict=True)]
        if self.log_std is not None:  # right after the mean, so a value tail (shared nets) stays last
            outs.insert(1, self.log_std.expand_as(outs[0]))
        return outs
