"""Output tails shared by the nets whose bodies end in a feature vector (MLP, conv, recurrent, TorchArc).

The algorithms read ``net.tails`` (to re-initialise the policy and value output layers, D3) and expect the same
output conventions from every net class, so the tails logic lives in one place instead of being copied per net.
"""

import torch
from torch import nn

from slm_lab.agent.net.builder import build_tails, get_activation
from slm_lab.errors import SpecError
from slm_lab.spec.schema import NetSpec

__all__ = ["TailsMixin"]


class TailsMixin(nn.Module):
    """Adds ``tails``, ``out_acts`` and ``log_std`` to a net, with MLPNet's output rules.

    ``out_dim`` is an int (one tail, a tensor out) or a list (one tail each, a list out). With ``log_std_init`` and
    ``out_dim == [A, A]`` the log-std output is a learned state-independent
    parameter instead of a tail.
    """

    tails: nn.ModuleList
    out_acts: nn.ModuleList
    log_std: nn.Parameter | None

    def _init_tails(self, body_dim: int, out_dim: int | list[int], cfg: NetSpec) -> None:
        log_std_init = cfg.log_std_init
        self.log_std = None
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
        out_act = cfg.out_layer_activation
        acts = out_act if isinstance(out_act, list) else [out_act] * len(self.tails)
        if len(acts) != len(self.tails):
            raise SpecError(
                f"agent.net.out_layer_activation: got {len(acts)} activations for {len(self.tails)} output tails"
            )
        self.out_acts = nn.ModuleList(get_activation(a, "agent.net.out_layer_activation") for a in acts)
        self._single = len(self.tails) == 1 and self.log_std is None

    def _tails_forward(self, h: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if self._single:
            return self.out_acts[0](self.tails[0](h))
        outs = [act(tail(h)) for tail, act in zip(self.tails, self.out_acts, strict=True)]
        if self.log_std is not None:  # right after the mean, so a value tail (shared nets) stays last
            outs.insert(1, self.log_std.expand_as(outs[0]))
        return outs
