"""Convolutional nets for image observations (B, C, H, W), e.g. stacked 84x84 Atari frames."""

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from loguru import logger
from torch import nn

from slm_lab.agent.net.base import net_config
from slm_lab.agent.net.builder import build_mlp, get_activation, init_layers
from slm_lab.agent.net.dueling import DuelingHead, check_dueling_out_dim
from slm_lab.agent.net.mlp import NETS
from slm_lab.agent.net.tails import TailsMixin
from slm_lab.errors import SpecError
from slm_lab.spec.schema import ConvNetSpec, DuelingConvNetSpec

__all__ = ["ConvNet", "DuelingConvNet", "build_conv", "image_shape"]

_CONV_ARGS = ("out_channels", "kernel_size", "stride", "padding", "dilation")


def image_shape(in_dim: int | Sequence[int], net_type: str) -> tuple[int, int, int]:
    """The (C, H, W) observation shape a conv net needs; a flat int width cannot be unflattened."""
    if isinstance(in_dim, int) or len(in_dim) != 3:
        raise SpecError(
            f"agent.net.type: {net_type} needs image observations of shape (C, H, W), got in_dim={in_dim!r}; "
            "the algorithm must pass the observation shape (not its flattened size) to nets with flat_input=False"
        )
    c, h, w = (int(d) for d in in_dim)
    return c, h, w


def _conv_layer_kwargs(layer: Any, i: int) -> dict[str, Any]:
    """One ``conv_hid_layers`` entry ``[out_channels, kernel, stride, padding, dilation]`` as Conv2d kwargs.

    Trailing entries may be left out (Conv2d's defaults apply); a kernel, stride, padding or dilation given as a
    list means a per-axis tuple, e.g. ``[32, [8, 4], [4, 2]]``."""
    key = f"agent.net.conv_hid_layers[{i}]"
    if not isinstance(layer, list | tuple) or not 2 <= len(layer) <= len(_CONV_ARGS):
        raise SpecError(
            f"{key}: expected [out_channels, kernel, stride, padding, dilation] (2 to 5 items), got {layer!r}"
        )
    kwargs: dict[str, Any] = {}
    for name, value in zip(_CONV_ARGS, layer, strict=False):
        if isinstance(value, list | tuple):
            if name == "out_channels" or not all(isinstance(v, int) and v >= 0 for v in value):
                raise SpecError(
                    f"{key}: {name} must be a non-negative int{' or a list of them' if name != 'out_channels' else ''}, got {value!r}"
                )
            value = tuple(value)
        elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SpecError(f"{key}: {name} must be a non-negative int, got {value!r}")
        kwargs[name] = value
    return kwargs


def build_conv(
    in_channels: int, conv_hid_layers: list[Any], activation: str, batch_norm: bool
) -> nn.Sequential:
    """Conv2d -> activation per ``conv_hid_layers`` entry, with BatchNorm2d after every conv but the first when
    ``batch_norm`` (the reference's layout: normalising the first layer's output would rescale raw pixels twice)."""
    layers: list[nn.Module] = []
    for i, layer in enumerate(conv_hid_layers):
        kwargs = _conv_layer_kwargs(layer, i)
        layers.append(nn.Conv2d(in_channels, **kwargs))
        layers.append(get_activation(activation))
        if batch_norm and i > 0:
            layers.append(nn.BatchNorm2d(kwargs["out_channels"]))
        in_channels = kwargs["out_channels"]
    return nn.Sequential(*layers, nn.Flatten())


class _ConvBody(nn.Module):
    """Input scaling, conv stack, flatten and ``fc_hid_layers``: the part ConvNet and DuelingConvNet share."""

    def __init__(self, cfg: ConvNetSpec, in_dim: int | Sequence[int], net_type: str) -> None:
        super().__init__()
        self.in_shape = image_shape(in_dim, net_type)
        conv_hid_layers = cfg.conv_hid_layers
        if not isinstance(conv_hid_layers, list) or not conv_hid_layers:
            raise SpecError(
                f"agent.net.conv_hid_layers: expected a non-empty list of conv layers, got {conv_hid_layers!r}"
            )
        activation = cfg.hid_layers_activation
        # dividing by 255 here, on the net's device, lets uint8 frames travel to the GPU at a quarter of the bytes
        self.normalize = cfg.normalize
        self.conv = build_conv(self.in_shape[0], conv_hid_layers, activation, cfg.batch_norm)
        with (
            torch.no_grad()
        ):  # the flattened conv width, from one dummy frame (eval: BatchNorm must not update)
            self.conv.eval()
            conv_dim = int(self.conv(torch.zeros(1, *self.in_shape)).shape[1])
            self.conv.train()
        fc_hid_layers = list(cfg.fc_hid_layers)
        self.fc = build_mlp(conv_dim, fc_hid_layers, activation, layer_norm=cfg.layer_norm)
        self.out_dim = fc_hid_layers[-1] if fc_hid_layers else conv_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_floating_point():
            x = x.float()  # uint8 frames are converted on the device, never on the CPU
        if self.normalize:
            x = x / 255.0
        return self.fc(self.conv(x))


@NETS.register("ConvNet")
class ConvNet(TailsMixin):
    """Conv2d -> activation (-> BatchNorm2d from the second layer on) per ``conv_hid_layers`` entry, flatten,
    ``fc_hid_layers`` (Linear -> [LayerNorm] -> activation), then one Linear tail per output.

    Input (B, C, H, W), uint8 or float. ``normalize`` divides by 255 inside the net. ``batch_norm`` defaults to true
    (reference parity, D17), which is logged when the key is absent. The Nature CNN (Mnih et al. 2015)::

        {"type": "ConvNet", "conv_hid_layers": [[32, 8, 4, 0, 1], [64, 4, 2, 0, 1], [32, 3, 1, 0, 1]],
         "fc_hid_layers": [512], "hid_layers_activation": "relu", "normalize": true, "batch_norm": false,
         "init_fn": "orthogonal_", "clip_grad_val": 0.5, "optim_spec": {"name": "Adam", "lr": 2.5e-4}}
    """

    flat_input = False  # takes the (B, C, H, W) observation as it is
    takes_obs_shape = True  # the algorithm passes the observation shape as in_dim, not its flattened size

    def __init__(
        self, net_spec: Mapping[str, Any] | ConvNetSpec, in_dim: int | Sequence[int], out_dim: int | list[int]
    ) -> None:
        super().__init__()
        cfg = net_config(net_spec, "ConvNet")
        if "batch_norm" not in cfg.model_fields_set:
            logger.info("agent.net.batch_norm: absent, ConvNet defaults to true (reference parity, D17)")
        self.body = _ConvBody(cfg, in_dim, "ConvNet")
        self.in_dim, self.out_dim = self.body.in_shape, out_dim
        self._init_tails(self.body.out_dim, out_dim, cfg)
        init_layers(self, cfg.init_fn, cfg.hid_layers_activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        return self._tails_forward(self.body(x))


@NETS.register("DuelingConvNet")
class DuelingConvNet(nn.Module):
    """The ConvNet body followed by a :class:`DuelingHead`: Q = V + A − mean(A) (Wang et al. 2016).

    Takes the ConvNet keys; ``batch_norm`` defaults to false here (D17). ``out_dim`` is the number of discrete
    actions; ``out_layer_activation`` is ignored (with a warning when set), as in DuelingMLPNet::

        {"type": "DuelingConvNet", "conv_hid_layers": [[32, 8, 4, 0, 1], [64, 4, 2, 0, 1], [32, 3, 1, 0, 1]],
         "fc_hid_layers": [256], "hid_layers_activation": "relu", "normalize": true, "init_fn": "xavier_uniform_",
         "loss_spec": {"name": "SmoothL1Loss"}, "optim_spec": {"name": "Adam", "lr": 1e-4},
         "update_type": "replace", "update_frequency": 1000}
    """

    flat_input = False
    takes_obs_shape = True  # the algorithm passes the observation shape as in_dim, not its flattened size

    def __init__(
        self, net_spec: Mapping[str, Any] | DuelingConvNetSpec, in_dim: int | Sequence[int], out_dim: int
    ) -> None:
        super().__init__()
        cfg = net_config(net_spec, "DuelingConvNet")
        self.out_dim = check_dueling_out_dim(out_dim, "DuelingConvNet")
        out_act = cfg.out_layer_activation
        if out_act is not None and str(out_act).replace("_", "").lower() != "identity":
            logger.warning(
                f"agent.net.out_layer_activation: {out_act!r} is ignored by DuelingConvNet, which outputs raw Q-values"
            )
        self.body = _ConvBody(cfg, in_dim, "DuelingConvNet")
        self.in_dim = self.body.in_shape
        self.head = DuelingHead(self.body.out_dim, self.out_dim)
        init_layers(self, cfg.init_fn, cfg.hid_layers_activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))
