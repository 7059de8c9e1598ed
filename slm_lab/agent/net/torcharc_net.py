"""Nets whose body is a TorchArc architecture, built by the torcharc package (see :mod:`slm_lab.agent.net.arc`)."""

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from slm_lab.agent.net.arc import build_arc, graph_inputs, load_arc, modules_fed_by
from slm_lab.agent.net.base import net_config
from slm_lab.agent.net.builder import init_layers
from slm_lab.agent.net.layers import WeightNormLinear
from slm_lab.agent.net.mlp import NETS
from slm_lab.agent.net.tails import TailsMixin
from slm_lab.errors import SpecError
from slm_lab.spec.schema import TorchArcNetSpec

__all__ = ["TorchArcNet"]


def _starts_with_conv(graph: fx.GraphModule) -> bool:
    """Whether the first module fed by the graph input is a convolution (then the input keeps its shape)."""
    fed = modules_fed_by(graph, graph_inputs(graph)[0])
    if not fed:
        return False
    module = fed[0]
    while isinstance(module, nn.Sequential) and len(module) > 0:
        module = module[0]
    return isinstance(module, nn.modules.conv._ConvNd)


def _init_weight_norm_layers(net: nn.Module, init_fn: str | None, activation: str) -> None:
    """``init_layers`` for WeightNormLinear: the init applies to the effective weight, which is then reparametrized
    (the layer is not an nn.Linear, so init_layers leaves it alone)."""
    if init_fn is None:
        return
    for m in net.modules():
        if isinstance(m, WeightNormLinear):
            plain = nn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
            init_layers(plain, init_fn, activation)
            m.set_weight(plain.weight.detach())
            if m.bias is not None:
                nn.init.zeros_(m.bias)


@NETS.register("TorchArcNet")
class TorchArcNet(TailsMixin):
    """A body built from a TorchArc-format ``arc`` (inline) or ``arc_file`` (YAML/JSON path), then the MLPNet tails.

    Construction: a dummy batch-1 forward in eval mode gives the body's output width and materialises
    lazy layers (``LazyLinear``, ``LazyBatchRenorm1d``, ...); body outputs with more than 2 dims are flattened; then
    one Linear tail per output. ``normalize`` divides the input by 255 inside the net. The graph must have one input
    (the observation). Observations are flattened by the algorithm (``flat_input``) unless the arc starts with a
    convolution, which then receives the observation shape. Spec example::

        {"type": "TorchArcNet", "shared": false, "hid_layers_activation": "relu", "init_fn": "orthogonal_",
         "arc": {"modules": {"body": {"Sequential": [{"LazyLinear": {"out_features": 64}}, {"LazyBatchRenorm1d": null},
                                                     {"ReLU": null}, {"LazyLinear": {"out_features": 64}},
                                                     {"ReLU": null}]}},
                 "graph": {"input": "x", "modules": {"body": ["x"]}, "output": "body"}},
         "optim_spec": {"name": "Adam", "lr": 3e-4}}
    """

    flat_input = True  # per instance: False when the arc starts with a convolution
    takes_obs_shape = True  # the algorithm passes the observation shape as in_dim, not its flattened size

    def __init__(
        self,
        net_spec: Mapping[str, Any] | TorchArcNetSpec,
        in_dim: int | Sequence[int],
        out_dim: int | list[int],
    ) -> None:
        super().__init__()
        cfg = net_config(
            net_spec, "TorchArcNet"
        )  # its model checks that exactly one of arc, arc_file is given
        arc, arc_file = cfg.arc, cfg.arc_file
        key = "agent.net.arc" if arc is not None else "agent.net.arc_file"
        self.body = build_arc(arc if arc is not None else load_arc(arc_file), key)
        if len(graph_inputs(self.body)) != 1:
            raise SpecError(
                f"{key}.graph.input: TorchArcNet feeds one observation tensor, got {graph_inputs(self.body)}"
            )
        self.flat_input = not _starts_with_conv(self.body)
        if self.flat_input:
            in_shape: tuple[int, ...] = (in_dim if isinstance(in_dim, int) else int(np.prod(in_dim)),)
        elif isinstance(in_dim, int):
            raise SpecError(
                f"{key}: the arc starts with a convolution, so TorchArcNet needs the observation shape, got the flat "
                f"size in_dim={in_dim}; the algorithm must pass the shape to nets with flat_input=False"
            )
        else:
            in_shape = tuple(int(d) for d in in_dim)
        self.in_dim, self.out_dim = in_shape, out_dim
        self.normalize = cfg.normalize
        self.body.eval()  # batch-1 dummy forward: batch statistics must not move, lazy layers materialise
        with torch.no_grad():
            out = self.body(torch.zeros(1, *in_shape))
        self.body.train()
        if not isinstance(out, torch.Tensor):
            raise SpecError(
                f"{key}.graph.output: TorchArcNet needs the body to return one tensor, got {type(out).__name__}"
            )
        body_dim = int(out.flatten(1).shape[1])
        self._init_tails(body_dim, out_dim, cfg)
        init_layers(self, cfg.init_fn, cfg.hid_layers_activation)
        _init_weight_norm_layers(self, cfg.init_fn, cfg.hid_layers_activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if not x.is_floating_point():
            x = x.float()
        if self.normalize:
            x = x / 255.0
        h = self.body(x)
        return self._tails_forward(h.flatten(1) if h.dim() > 2 else h)
