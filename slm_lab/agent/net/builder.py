"""Layer, init, loss and optimizer builders shared by every net class.

Names follow the spec: activations and losses are torch.nn class names, matched case-insensitively and ignoring
underscores (``relu``, ``leaky_relu``, ``MSELoss``, ``smoothl1loss``); optimizers are torch.optim class names;
``init_fn`` is a ``torch.nn.init`` function name such as ``orthogonal_``.
"""

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from slm_lab.agent.net.layers import BatchRenorm1d
from slm_lab.errors import SpecError
from slm_lab.spec.schema import NetSpec
from slm_lab.spec.schema_base import ComponentSpec

__all__ = [
    "batch_renorm_kwargs",
    "build_loss",
    "build_mlp",
    "build_mlp_from_spec",
    "build_optimizer",
    "build_tails",
    "get_activation",
    "grad_clip",
    "init_layers",
    "init_output_layer",
    "net_in_dim",
]

# every activation torch.nn defines that maps a layer's output to one of the same size with default arguments:
# not Threshold (its threshold and value have no default), GLU (it halves the width) or MultiheadAttention
_NOT_ACTIVATIONS = {"Threshold", "GLU", "MultiheadAttention"}
_ACTIVATIONS = {
    name.lower(): getattr(nn, name)
    for name in nn.modules.activation.__all__
    if name not in _NOT_ACTIVATIONS and hasattr(nn, name)
} | {"identity": nn.Identity}
# activations over a dimension, taken as the feature dimension
_DIM_ACTIVATIONS = (nn.Softmax, nn.Softmin, nn.LogSoftmax)
# init gains need the functional name torch.nn.init.calculate_gain knows
_GAIN_NAMES = {
    "relu": "relu",
    "leakyrelu": "leaky_relu",
    "tanh": "tanh",
    "sigmoid": "sigmoid",
    "selu": "selu",
}


def _canon(name: str) -> str:
    return name.replace("_", "").lower()


def get_activation(name: str | None, key: str = "agent.net.hid_layers_activation") -> nn.Module:
    """An activation module from its torch.nn name (case-insensitive); None gives Identity."""
    if name is None:
        return nn.Identity()
    cls = _ACTIVATIONS.get(_canon(name))
    if cls is None:
        raise SpecError(f"{key}: unknown activation {name!r}; valid names: {', '.join(sorted(_ACTIVATIONS))}")
    return cls(dim=-1) if cls in _DIM_ACTIVATIONS else cls()


def build_mlp(
    in_dim: int,
    hid_layers: list[int],
    activation: str,
    layer_norm: bool = False,
    batch_norm: bool = False,
    batch_renorm: dict[str, Any] | None = None,
) -> nn.Sequential:
    """Linear -> [BatchRenorm1d | BatchNorm1d | LayerNorm] -> activation for each hidden width.

    ``batch_renorm`` holds ``BatchRenorm1d`` keyword arguments (``momentum``, ``eps``, ``warmup_steps``); None means
    no batch renorm."""
    layers: list[nn.Module] = []
    for width in hid_layers:
        layers.append(nn.Linear(in_dim, width))
        if batch_renorm is not None:
            layers.append(BatchRenorm1d(width, **batch_renorm))
        elif batch_norm:
            layers.append(nn.BatchNorm1d(width))
        elif layer_norm:
            layers.append(nn.LayerNorm(width))
        layers.append(get_activation(activation))
        in_dim = width
    return nn.Sequential(*layers)


def build_mlp_from_spec(cfg: Any, in_dim: int) -> nn.Sequential:
    """``build_mlp`` with an MLP net spec's ``hid_layers``, ``hid_layers_activation`` and norm keys (``layer_norm``,
    ``batch_norm``, ``batch_renorm``): the body of the MLP nets."""
    return build_mlp(
        in_dim,
        list(cfg.hid_layers),
        cfg.hid_layers_activation,
        cfg.layer_norm,
        cfg.batch_norm,
        batch_renorm_kwargs(cfg.batch_renorm),
    )


def grad_clip(cfg: NetSpec) -> float | None:
    """The net spec's ``clip_grad_val`` as a float (the max global gradient norm), or None for no clipping."""
    return None if cfg.clip_grad_val is None else float(cfg.clip_grad_val)


def net_in_dim(net_cls: type[nn.Module], state_dim: int | tuple[int, ...]) -> int | tuple[int, ...]:
    """What a net class takes as ``in_dim``: the observation shape for classes that read it (``takes_obs_shape``:
    conv, recurrent and TorchArc nets), else the flattened size (MLP nets)."""
    if getattr(net_cls, "takes_obs_shape", False) or isinstance(state_dim, int):
        return state_dim
    return int(np.prod(state_dim))


def batch_renorm_kwargs(value: bool | dict[str, Any] | None) -> dict[str, Any] | None:
    """The ``batch_renorm`` net key as ``BatchRenorm1d`` keyword arguments: false/null -> None (off), true -> the
    layer's defaults, a dict -> those settings (``momentum``, ``eps``, ``warmup_steps``, ``r_max_end``,
    ``d_max_end``)."""
    if value is None or value is False:
        return None
    if value is True:
        return {}
    allowed = ("momentum", "eps", "warmup_steps", "r_max_end", "d_max_end")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise SpecError(f"agent.net.batch_renorm: unknown key(s) {unknown}; valid keys: {', '.join(allowed)}")
    return dict(value)


def build_tails(in_dim: int, out_dim: int | list[int]) -> nn.ModuleList:
    """One Linear tail per output; an int out_dim is a single tail."""
    dims = [out_dim] if isinstance(out_dim, int) else list(out_dim)
    return nn.ModuleList(nn.Linear(in_dim, d) for d in dims)


def _init_weight(weight: torch.Tensor, init_fn: str, activation: str | None) -> None:
    fn = getattr(nn.init, init_fn, None)
    if fn is None or not init_fn.endswith("_") or not callable(fn):
        valid = sorted(n for n in dir(nn.init) if n.endswith("_") and not n.startswith("_"))
        raise SpecError(
            f"agent.net.init_fn: unknown init function {init_fn!r}; valid names: {', '.join(valid)}"
        )
    act = _GAIN_NAMES.get(_canon(activation or ""), "linear")
    if init_fn.startswith("kaiming"):
        fn(weight, nonlinearity=act if act in ("relu", "leaky_relu") else "relu")
    elif init_fn.startswith(("orthogonal", "xavier")):
        fn(weight, gain=nn.init.calculate_gain(act))
    else:
        fn(weight)


def init_layers(module: nn.Module, init_fn: str | None, activation: str | None) -> None:
    """Apply ``init_fn`` to every Linear/Conv/RNN weight with the activation's gain; biases to 0.

    With no ``init_fn`` the torch defaults are kept.
    """
    if init_fn is None:
        return
    for m in module.modules():
        if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d):
            _init_weight(m.weight, init_fn, activation)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.RNNBase):
            for name, param in m.named_parameters():
                if "weight" in name:
                    _init_weight(param, init_fn, activation)
                elif "bias" in name:
                    nn.init.zeros_(param)


def init_output_layer(layer: nn.Linear, std: float) -> None:
    """Orthogonal init with gain ``std`` and zero bias, for the policy/value output layers (D3)."""
    nn.init.orthogonal_(layer.weight, gain=std)
    nn.init.zeros_(layer.bias)


def component_kwargs(spec: Mapping[str, Any] | ComponentSpec) -> dict[str, Any]:
    """A ``{name, **kwargs}`` component spec (``loss_spec``, ``optim_spec``, ...) as a plain dict."""
    return spec.model_dump() if isinstance(spec, ComponentSpec) else dict(spec)


def build_loss(loss_spec: Mapping[str, Any] | ComponentSpec) -> nn.Module:
    """Any torch.nn loss by name (case-insensitive), with kwargs (the net spec's ``loss_spec``, whose default,
    MSELoss, is the schema's)."""
    spec = component_kwargs(loss_spec)
    name = spec.pop("name")
    losses = {
        n.lower(): getattr(nn, n) for n in dir(nn) if n.endswith("Loss") and isinstance(getattr(nn, n), type)
    }
    cls = losses.get(_canon(name))
    if cls is None:
        raise SpecError(
            f"agent.net.loss_spec.name: unknown loss {name!r}; valid names: {', '.join(sorted(losses))}"
        )
    try:
        return cls(**spec)
    except TypeError as e:
        raise SpecError(f"agent.net.loss_spec: bad arguments for {name}: {e}") from None


_FUSED_OPTIMS = ("Adam", "AdamW", "SGD", "Adagrad")


def build_optimizer(
    optim_spec: Mapping[str, Any] | ComponentSpec, params: Any, key: str = "agent.net.optim_spec"
) -> torch.optim.Optimizer:
    """Any torch.optim optimizer by class name with kwargs (``lr``, ``eps``, ``betas``, ...); the net spec's
    ``optim_spec`` defaults to Adam in the schema."""
    spec = component_kwargs(optim_spec)
    name = spec.pop("name")
    optims = {
        n: getattr(torch.optim, n)
        for n in dir(torch.optim)
        if isinstance(getattr(torch.optim, n), type)
        and issubclass(getattr(torch.optim, n), torch.optim.Optimizer)
        and n != "Optimizer"
    }
    cls = optims.get(name)
    if cls is None:
        raise SpecError(f"{key}.name: unknown optimizer {name!r}; valid names: {', '.join(sorted(optims))}")
    if "betas" in spec and isinstance(spec["betas"], list):
        spec["betas"] = tuple(spec["betas"])
    if name in _FUSED_OPTIMS and "fused" not in spec and "foreach" not in spec:
        # one fused kernel per step instead of a Python loop over parameters: same update rule, ~20% faster
        # minibatch steps for small nets on CPU; a spec may still choose ``foreach``/``fused`` itself
        spec["fused"] = True
    try:
        return cls(params, **spec)
    except (TypeError, ValueError) as e:
        raise SpecError(f"{key}: bad arguments for {name}: {e}") from None
