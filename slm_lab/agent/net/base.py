"""The typed net spec every net is built from, the one optimizer-step site of the lab, and the dev-mode training
checks."""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from loguru import logger
from torch import nn

from slm_lab.spec.schema import NET_SPECS, NetSpec
from slm_lab.spec.schema_base import typed_section

__all__ = ["OptimPair", "TrainingChecker", "clip_grad_norm", "net_config", "train_step"]


def net_config(net_spec: Mapping[str, Any] | NetSpec, net_type: str, key: str = "agent.net") -> NetSpec:
    """The typed spec a net of class ``net_type`` is built from: its schema model, with every default filled in
    there and nowhere else (``typed_section``)."""
    if isinstance(net_spec, NetSpec) and not isinstance(net_spec, NET_SPECS[net_type]):
        net_spec = net_spec.model_dump(exclude_unset=True)
    if not isinstance(net_spec, NetSpec):
        net_spec = {**net_spec, "type": net_type}
    return typed_section(net_spec, NET_SPECS[net_type], key)


@dataclass
class OptimPair:
    """A net, the optimizer over its parameters, and its gradient-norm clip (None = no clipping)."""

    net: nn.Module
    optim: torch.optim.Optimizer
    clip_grad_val: float | None = None
    params: list[torch.nn.Parameter] = field(init=False)

    def __post_init__(self) -> None:
        self.params = [p for p in self.net.parameters() if p.requires_grad]


class TrainingChecker:
    """Dev/test-mode checks after each train step: some parameter changed, gradient norms in (0, 1e5).

    Under test (``strict``) a frozen net raises; otherwise it logs an error. The last total gradient norm feeds the
    ``grad_norm`` column.
    """

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.grad_norm = math.nan

    def before(self, pairs: Sequence[OptimPair]) -> list[list[torch.Tensor]]:
        return [[p.detach().clone() for p in pair.params] for pair in pairs]

    def after(
        self, pairs: Sequence[OptimPair], snapshot: list[list[torch.Tensor]], grad_norms: list[float]
    ) -> None:
        for pair, before, norm in zip(pairs, snapshot, grad_norms, strict=True):
            name = type(pair.net).__name__
            if not 0.0 < norm < 1e5:
                logger.warning(f"{name}: gradient norm {norm:.4g} is outside (0, 1e5)")
            if all(torch.equal(b, p) for b, p in zip(before, pair.params, strict=True)):
                msg = f"{name}: no parameter changed after a train step"
                if self.strict:
                    raise AssertionError(msg)
                logger.error(msg)
        self.grad_norm = float(sum(grad_norms))


def clip_grad_norm(params: Sequence[torch.Tensor], max_norm: float | None) -> torch.Tensor:
    """Scale gradients so that their global L2 norm is at most ``max_norm`` (None: only measure); returns the norm
    before clipping. The rule of ``torch.nn.utils.clip_grad_norm_`` in four tensor ops, without its per-call
    grouping overhead (half the cost of a clip for the small nets of classic-control tasks)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    if max_norm is not None:
        torch._foreach_mul_(grads, torch.clamp(max_norm / (norm + 1e-6), max=1.0))
    return norm


def train_step(
    loss: torch.Tensor,
    pairs: Sequence[OptimPair],
    checker: TrainingChecker | None = None,
    strict: bool = False,
) -> bool:
    """Zero grads, one backward on ``loss``, clip each net's gradient norm, step each optimizer.

    Several pairs share one backward: with disjoint parameters (separate actor and critic nets) the gradients are the
    same as two backward passes on the two losses, at the cost of one. A non-finite loss skips the update with a
    warning (and raises when ``strict``, i.e. under test). Returns whether the update ran.
    """
    value = loss.item()
    if not math.isfinite(value):
        msg = f"non-finite loss {value}; update skipped"
        if strict:
            raise FloatingPointError(msg)
        logger.warning(msg)
        return False
    for (
        pair
    ) in pairs:  # the same as optim.zero_grad(set_to_none=True), without its per-call profiling overhead
        for p in pair.params:
            p.grad = None
    loss.backward()
    snapshot = checker.before(pairs) if checker is not None else None
    grad_norms = []
    for pair in pairs:
        if pair.clip_grad_val is not None or checker is not None:
            norm = clip_grad_norm(pair.params, pair.clip_grad_val)
            if checker is not None:
                grad_norms.append(float(norm))
        pair.optim.step()
    if checker is not None and snapshot is not None:
        checker.after(pairs, snapshot, grad_norms)
    return True
