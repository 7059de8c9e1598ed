"""Extra layers the lab's nets (and TorchArc specs) can name: batch renormalization and spectral norm helpers."""

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import UninitializedBuffer, UninitializedParameter

__all__ = [
    "BatchRenorm1d",
    "Concat",
    "LazyBatchRenorm1d",
    "LazyWeightNormLinear",
    "WeightNormLinear",
    "apply_spectral_norm",
]


class BatchRenorm1d(nn.Module):
    """Batch renormalization (Ioffe 2017, https://arxiv.org/abs/1702.03275) over the feature dim of (B, C) inputs.

    Batch norm normalises with the batch's own statistics, so a network's output for one sample depends on the rest
    of its batch and drifts from what eval mode (running statistics) computes. Batch renorm corrects the batch
    statistics toward the running ones, which is what lets CrossQ (Bhatt et al. 2024) drop its target networks.

    Training mode, with σ = √(running_var + eps), σ_B = √(batch_var + eps) (the biased batch variance)::

        r = clamp(σ_B / σ, 1/r_max, r_max),  d = clamp((μ_B − μ) / σ, −d_max, d_max)   (no gradient through r, d)
        x̂ = (x − μ_B) / σ_B · r + d,          y = weight · x̂ + bias

    ``r_max`` rises linearly from 1 to ``r_max_end`` (3) and ``d_max`` from 0 to ``d_max_end`` (5) over
    ``warmup_steps`` training forwards, so the layer starts as plain batch norm while the running statistics are
    still poor. The running statistics move by ``momentum`` (0.01) toward each batch's mean and biased variance.
    Eval mode uses the running statistics: y = weight · (x − μ) / σ + bias.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-3,
        momentum: float = 0.01,
        warmup_steps: int = 10000,
        r_max_end: float = 3.0,
        d_max_end: float = 5.0,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.num_features = num_features
        self.eps = float(eps)
        self.momentum = float(momentum)
        self.warmup_steps = int(warmup_steps)
        self.r_max_end = float(r_max_end)
        self.d_max_end = float(d_max_end)
        self.weight = nn.Parameter(torch.ones(num_features, **factory))
        self.bias = nn.Parameter(torch.zeros(num_features, **factory))
        self.register_buffer("running_mean", torch.zeros(num_features, **factory))
        self.register_buffer("running_var", torch.ones(num_features, **factory))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device))

    def limits(self) -> tuple[float, float]:
        """(r_max, d_max) at the current training step: linear from (1, 0) to (r_max_end, d_max_end)."""
        progress = (
            min(1.0, int(self.num_batches_tracked) / self.warmup_steps) if self.warmup_steps > 0 else 1.0
        )
        return 1.0 + (self.r_max_end - 1.0) * progress, self.d_max_end * progress

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2:
            raise ValueError(
                f"{type(self).__name__} expects (batch, features) input, got shape {tuple(x.shape)}"
            )
        if not self.training:
            x_hat = (x - self.running_mean) * torch.rsqrt(self.running_var + self.eps)
            return x_hat * self.weight + self.bias
        batch_mean = x.mean(0)
        batch_var = x.var(0, unbiased=False)
        batch_std = torch.sqrt(batch_var + self.eps)
        with torch.no_grad():
            running_std = torch.sqrt(self.running_var + self.eps)
            r_max, d_max = self.limits()
            r = (batch_std / running_std).clamp(1.0 / r_max, r_max)
            d = ((batch_mean - self.running_mean) / running_std).clamp(-d_max, d_max)
            self.running_mean.lerp_(batch_mean, self.momentum)
            self.running_var.lerp_(batch_var, self.momentum)
            self.num_batches_tracked += 1
        x_hat = (x - batch_mean) / batch_std * r + d
        return x_hat * self.weight + self.bias

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, warmup_steps={self.warmup_steps}"
        )


class LazyBatchRenorm1d(LazyModuleMixin, BatchRenorm1d):
    """``BatchRenorm1d`` whose ``num_features`` is read from the first input (for specs that do not know widths)."""

    cls_to_become = BatchRenorm1d  # type: ignore[assignment]
    weight: UninitializedParameter
    bias: UninitializedParameter

    def __init__(
        self,
        eps: float = 1e-3,
        momentum: float = 0.01,
        warmup_steps: int = 10000,
        r_max_end: float = 3.0,
        d_max_end: float = 5.0,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(0, eps, momentum, warmup_steps, r_max_end, d_max_end, device, dtype)
        factory = {"device": device, "dtype": dtype}
        self.weight = UninitializedParameter(**factory)
        self.bias = UninitializedParameter(**factory)
        self.running_mean = UninitializedBuffer(**factory)
        self.running_var = UninitializedBuffer(**factory)

    def reset_parameters(self) -> None:
        if not self.has_uninitialized_params() and self.num_features != 0:
            with torch.no_grad():
                self.weight.fill_(1.0)
                self.bias.zero_()
                self.running_mean.zero_()
                self.running_var.fill_(1.0)
                self.num_batches_tracked.zero_()

    def initialize_parameters(self, x: torch.Tensor) -> None:  # type: ignore[override]
        if self.has_uninitialized_params():
            self.num_features = int(x.shape[-1])
            with torch.no_grad():
                for name in ("weight", "bias", "running_mean", "running_var"):
                    getattr(self, name).materialize((self.num_features,))
            self.reset_parameters()


def apply_spectral_norm(net: nn.Module) -> nn.Module:
    """Spectral normalization (Miyato et al. 2018) on the penultimate Linear layer of ``net``: the last hidden layer,
    right before the output layer. Gogianu et al. 2021 (https://arxiv.org/abs/2105.05246) found this one layer enough to
    stabilise value learning. Needs at least two Linear layers."""
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if len(linears) < 2:
        raise ValueError(
            f"spectral_norm needs a net with at least two Linear layers, {type(net).__name__} has {len(linears)}"
        )
    nn.utils.parametrizations.spectral_norm(linears[-2])  # registers the parametrization in place
    return net


class WeightNormLinear(nn.Module):
    """A Linear layer with weight normalization (Salimans & Kingma 2016, https://arxiv.org/abs/1602.07868).

    The weight is w = g · v / ‖v‖ with the norm taken per output unit (row), the reparametrization of
    ``torch.nn.utils.parametrizations.weight_norm(nn.Linear(...))`` (dim 0). Decoupling each unit's length g from its
    direction v conditions the gradient better, which helps value nets in RL (e.g. BRO, Nauman et al. 2024). The
    parameters are held explicitly (``weight_v``, ``weight_g``) rather than through a parametrization so that the
    lazy variant can materialise them. ``weight`` gives the effective weight.
    """

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, device: Any = None, dtype: Any = None
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.in_features, self.out_features = in_features, out_features
        self.weight_v = nn.Parameter(torch.empty(out_features, in_features, **factory))
        self.weight_g = nn.Parameter(torch.empty(out_features, 1, **factory))
        self.bias: nn.Parameter | None = nn.Parameter(torch.empty(out_features, **factory)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """nn.Linear's default init for the effective weight and bias, with g = ‖v‖ so that w = v at the start."""
        nn.init.kaiming_uniform_(self.weight_v, a=math.sqrt(5))
        self.set_weight(self.weight_v.detach())
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
            nn.init.uniform_(self.bias, -bound, bound)

    @torch.no_grad()
    def set_weight(self, weight: torch.Tensor) -> None:
        """Make the effective weight equal ``weight`` (v = weight, g = its row norms), e.g. after an ``init_fn``."""
        self.weight_v.copy_(weight)
        self.weight_g.copy_(weight.norm(dim=1, keepdim=True))

    @property
    def weight(self) -> torch.Tensor:
        return self.weight_g * self.weight_v / self.weight_v.norm(dim=1, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
        )


class LazyWeightNormLinear(LazyModuleMixin, WeightNormLinear):
    """``WeightNormLinear`` whose ``in_features`` is read from the first input (for specs that do not know widths)."""

    cls_to_become = WeightNormLinear  # type: ignore[assignment]
    weight_v: UninitializedParameter
    weight_g: UninitializedParameter

    def __init__(self, out_features: int, bias: bool = True, device: Any = None, dtype: Any = None) -> None:
        super().__init__(0, 0, False, device, dtype)  # real shapes are set in initialize_parameters
        factory = {"device": device, "dtype": dtype}
        self.out_features = out_features
        self.weight_v = UninitializedParameter(**factory)
        self.weight_g = UninitializedParameter(**factory)
        if bias:
            self.bias = UninitializedParameter(**factory)

    def reset_parameters(self) -> None:
        if not self.has_uninitialized_params() and self.in_features != 0:
            super().reset_parameters()

    def initialize_parameters(self, x: torch.Tensor) -> None:  # type: ignore[override]
        if self.has_uninitialized_params():
            self.in_features = int(x.shape[-1])
            with torch.no_grad():
                self.weight_v.materialize((self.out_features, self.in_features))
                self.weight_g.materialize((self.out_features, 1))
                if self.bias is not None:
                    self.bias.materialize((self.out_features,))
            self.reset_parameters()


class Concat(nn.Module):
    """Concatenate several inputs along ``dim`` (default the feature dim): the merge node of a multi-input arc."""

    def __init__(self, dim: int = -1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
