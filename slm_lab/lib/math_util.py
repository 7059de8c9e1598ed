"""Pure tensor math for the learners: return/advantage estimators, normalizers, polyak averaging.

Everything here is tensor in, tensor out, with no knowledge of agents, memories or specs, so each function can be
checked against a hand computation.

Conventions for the on-policy recursions (D6). Batches are time-major, shape (T, N) for T vector steps
of N env copies (any trailing shape also works; time is always dim 0).

- ``terminateds[t]``: the episode really ended at step t (the MDP reached a terminal state): **no bootstrap**.
- ``truncateds[t]``: the episode was cut by a time limit: bootstrap from V of the **true final observation**, which
  the memory stores as the step's next state, so ``next_values[t]`` = V(s'_t) is exactly that value.
- ``d_t = terminated ∨ truncated``: every recursion stops at d_t, so nothing leaks from one episode into the next
  (the env auto-resets in the same step, so row t+1 already belongs to a new episode).

All estimators reduce to one backward scan y_t = x_t + c_t·y_{t+1}, which is the only loop over time; masks and
discounts are built as whole tensors first. The results carry no gradient: returns and advantages are constants in
the losses that use them.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "PercentileNormalizer",
    "ReturnNormalizer",
    "TargetUpdate",
    "calc_gaes",
    "calc_nstep_returns",
    "calc_q_targets",
    "calc_returns",
    "copy_weights",
    "explained_variance",
    "polyak_update",
    "standardize",
    "symexp",
    "symlog",
    "weighted_mean",
]


def _check_same_shape(**tensors: Tensor) -> torch.Size:
    """Assert every tensor has one shape with a time dim first; returns that shape."""
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    first = next(iter(tensors.values())).shape
    assert len(first) >= 1, f"expected time-major tensors of shape (T, ...), got {shapes}"
    assert all(tuple(t.shape) == tuple(first) for t in tensors.values()), f"shape mismatch: {shapes}"
    return first


def _as_float(x: Tensor, like: Tensor) -> Tensor:
    """Bool/int flags -> the float dtype of ``like`` (a no-op when already matching)."""
    return x.to(dtype=like.dtype)


@torch.no_grad()
def _reverse_scan(x: Tensor, coef: Tensor, init: Tensor) -> Tensor:
    """y_t = x_t + coef_t · y_{t+1} for t = T-1 … 0, with y_T = ``init``; x, coef: (T, ...), init: x.shape[1:].

    The loop over T is inherently sequential. On CPU it runs on numpy views of the same memory, whose per-op
    overhead is about a third of torch's (the scan is ~T tiny ops); on other devices it uses fused torch ops.
    """
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
        xn, cn = x.detach().numpy(), coef.detach().numpy()
        out = np.empty_like(xn)
        nxt = init.detach().numpy()
        for t in range(xn.shape[0] - 1, -1, -1):
            nxt = out[t] = xn[t] + cn[t] * nxt
        return torch.from_numpy(out)
    out_t = torch.empty_like(x)
    xs, cs, ys = x.unbind(0), coef.unbind(0), out_t.unbind(0)
    nxt_t = init
    for t in range(x.shape[0] - 1, -1, -1):
        nxt_t = torch.addcmul(xs[t], cs[t], nxt_t, out=ys[t])
    return out_t


@torch.no_grad()
def calc_gaes(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    terminateds: Tensor,
    truncateds: Tensor,
    gamma: float,
    lam: float,
) -> Tensor:
    """Generalized advantage estimation (Schulman et al. 2016, https://arxiv.org/abs/1506.02438).

    δ_t = r_t + γ(1 − term_t)·V(s'_t) − V(s_t)
    A_t = δ_t + γλ(1 − d_t)·A_{t+1},  A_T = 0 (no advantage flows in from past the batch end)

    ``next_values`` are V of the true next states, so the bootstrap at the batch end and at a truncation is already
    inside δ_t; the recursion then stops at d_t (terminated, not just done, decides whether to bootstrap). The value
    targets are ``advs + values``. λ = 1 gives Monte-Carlo returns minus V (bootstrapped at the cuts); λ = 0 gives
    the one-step TD errors δ_t.

    All inputs are (T, N) (or (T,)); flags may be bool. Returns the advantages, (T, N), without gradient.
    """
    _check_same_shape(
        rewards=rewards,
        values=values,
        next_values=next_values,
        terminateds=terminateds,
        truncateds=truncateds,
    )
    term = _as_float(terminateds, rewards)
    done = torch.logical_or(terminateds.bool(), truncateds.bool()).to(rewards.dtype)
    deltas = rewards + gamma * (1.0 - term) * next_values - values
    coef = (gamma * lam) * (1.0 - done)
    return _reverse_scan(deltas, coef, torch.zeros_like(deltas[0]))


def _bootstrap_terms(
    rewards: Tensor, terminateds: Tensor, truncateds: Tensor, next_values: Tensor | None, gamma: float
) -> tuple[Tensor, Tensor]:
    """x_t = r_t + γ·[trunc_t ∧ ¬term_t]·V(s'_t) and c_t = γ(1 − d_t), shared by the return recursions.

    A step flagged both terminated and truncated is treated as terminated (no bootstrap), as gymnasium specifies.
    """
    done = torch.logical_or(terminateds.bool(), truncateds.bool())
    coef = gamma * (1.0 - done.to(rewards.dtype))
    if next_values is None:
        return rewards, coef
    trunc_only = torch.logical_and(truncateds.bool(), ~terminateds.bool()).to(rewards.dtype)
    return rewards + gamma * trunc_only * next_values, coef


@torch.no_grad()
def calc_returns(
    rewards: Tensor,
    terminateds: Tensor,
    truncateds: Tensor,
    gamma: float,
    trunc_values: Tensor | None = None,
) -> Tensor:
    """Discounted Monte-Carlo returns, cut at every episode end.

    R_t = r_t + γ(1 − d_t)·R_{t+1} + γ·trunc_t·V(s'_t),  R_T = 0 (no bootstrap past the batch end)

    ``trunc_values`` (T, N) are V of the true next states; only their entries at truncated (and not terminated)
    steps are read, so an episode cut by a time limit is completed with the critic's estimate. Reinforce has no
    critic and passes None, making the last term 0. Returns (T, N), without gradient.
    """
    if trunc_values is None:
        _check_same_shape(rewards=rewards, terminateds=terminateds, truncateds=truncateds)
    else:
        _check_same_shape(
            rewards=rewards, terminateds=terminateds, truncateds=truncateds, trunc_values=trunc_values
        )
    x, coef = _bootstrap_terms(rewards, terminateds, truncateds, trunc_values, gamma)
    return _reverse_scan(x, coef, torch.zeros_like(rewards[0]))


@torch.no_grad()
def calc_nstep_returns(
    rewards: Tensor,
    terminateds: Tensor,
    truncateds: Tensor,
    next_values: Tensor,
    gamma: float,
    n: int,
) -> Tensor:
    """n-step bootstrapped returns G_t, cut at episode ends; the n-step advantage is ``G − values``.

    G_t sums at most n discounted rewards from t, stopping early at the first episode end (d) or at the batch end,
    and then bootstraps with γ^k·V of the true next state reached at that point: 0 after a termination, V(s'_k)
    after a truncation or at the window/batch end. As a recursion:

    G_t = r_t + γ(1 − d_t)·G_{t+1} + γ·[trunc_t ∧ ¬term_t]·V(s'_t),  seeded with G_T = V(s'_{T-1})

    When n ≥ T (the usual case: ``num_step_returns`` sets ``training_frequency := n``, so T = n) this is one backward
    scan over the batch, the reference's "recursion over the last n steps seeded with V(s_T)", so step t gets a
    (T − t)-step return. When n < T every step gets a full n-step window, computed with n vectorised passes.

    All inputs (T, N); ``next_values`` = V(s'_t) for every step. Returns (T, N), without gradient.
    """
    _check_same_shape(
        rewards=rewards, terminateds=terminateds, truncateds=truncateds, next_values=next_values
    )
    assert n >= 1, f"n must be at least 1, got {n}"
    x, coef = _bootstrap_terms(rewards, terminateds, truncateds, next_values, gamma)
    if n >= rewards.shape[0]:
        return _reverse_scan(x, coef, next_values[-1])
    # window pass j computes the j-step return for all t at once: G^j_t = x_t + c_t·G^{j-1}_{t+1}, where the
    # (j-1)-step return "from t+1" starts as V(s_{t+1}) = V(s'_t) and is V(s'_{T-1}) past the batch end
    nxt = next_values
    for _ in range(n):
        ret = torch.addcmul(x, coef, nxt)
        nxt = torch.cat([ret[1:], next_values[-1:]])
    return ret


def standardize(x: Tensor) -> Tensor:
    """(x − mean)/(std + 1e-8) over all elements; a single element is returned unchanged (its std is undefined)."""
    if x.numel() <= 1:
        return x
    return (x - x.mean()) / (x.std() + 1e-8)


def symlog(x: Tensor) -> Tensor:
    """sign(x)·log(1 + |x|): compresses large magnitudes while staying ~identity near 0 (Hafner et al. 2023)."""
    return torch.sign(x) * torch.log1p(torch.abs(x))


def symexp(x: Tensor) -> Tensor:
    """sign(x)·(exp(|x|) − 1), the inverse of :func:`symlog`."""
    return torch.sign(x) * torch.expm1(torch.abs(x))


def explained_variance(y_pred: Tensor, y_true: Tensor) -> float:
    """1 − Var[y − ŷ]/Var[y]: 1 is a perfect value fit, 0 no better than a constant; NaN when Var[y] = 0."""
    assert y_pred.shape == y_true.shape, f"shape mismatch: {tuple(y_pred.shape)} vs {tuple(y_true.shape)}"
    var_y = torch.var(y_true, unbiased=False).item()
    if var_y == 0.0 or y_true.numel() < 2:
        return math.nan
    return 1.0 - torch.var(y_true - y_pred, unbiased=False).item() / var_y


@torch.no_grad()
def calc_q_targets(rewards: Tensor, terminateds: Tensor, next_q: Tensor, gamma: float) -> Tensor:
    """The one-step TD target y = r + γ(1 − terminated)·X, shared by SARSA and the DQN family.

    X (``next_q``) is the bootstrap value of the TRUE next state, which at truncation is the final observation (D6):
    only ``terminated``, not ``done``, cuts the bootstrap.
    """
    assert rewards.shape == terminateds.shape == next_q.shape, (
        rewards.shape,
        terminateds.shape,
        next_q.shape,
    )
    return rewards + gamma * (1.0 - terminateds.to(rewards.dtype)) * next_q


@torch.no_grad()
def copy_weights(target_net: nn.Module, net: nn.Module) -> None:
    """Hard target update: copy every parameter and buffer of ``net`` into ``target_net`` in place."""
    for t, s in zip(target_net.parameters(), net.parameters(), strict=True):
        t.copy_(s)
    for t, s in zip(target_net.buffers(), net.buffers(), strict=True):
        t.copy_(s)


def polyak_update(target_net: nn.Module, net: nn.Module, tau: float) -> None:
    """target ← (1 − τ)·target + τ·online, in place; τ is the weight on the **online** net (D14).

    Floating-point parameters and buffers are averaged (so BatchNorm running statistics track too); integer buffers
    such as ``num_batches_tracked`` are copied.
    """
    assert 0.0 <= tau <= 1.0, f"polyak tau must be in [0, 1], got {tau}"
    tgt_params, src_params = list(target_net.parameters()), list(net.parameters())
    assert len(tgt_params) == len(src_params), "target and online nets have different parameters"
    tgt_float, src_float = [p.data for p in tgt_params], [p.data for p in src_params]
    for tb, sb in zip(target_net.buffers(), net.buffers(), strict=True):
        if tb.is_floating_point():
            tgt_float.append(tb)
            src_float.append(sb)
        else:
            tb.copy_(sb)
    if tgt_float:
        torch._foreach_lerp_(tgt_float, src_float, tau)


def weighted_mean(per_sample: Tensor, weights: Tensor | None) -> Tensor:
    """mean(w_i · loss_i): the importance-weighted loss of prioritized replay (D31); the plain mean without weights."""
    return (per_sample * weights).mean() if weights is not None else per_sample.mean()


@dataclass(frozen=True)
class TargetUpdate:
    """How target nets follow their online nets (the ``update_type``, ``update_frequency`` and ``polyak_coef`` net
    keys): ``polyak`` moves each target by τ toward its net on every call; ``replace`` copies when
    ``frame % update_frequency < num_envs``, i.e. once per ``update_frequency`` frames of a vector env. A float
    frequency is taken as it is, as the reference does: 2.5e3 copies every 2,500 frames, and a fraction of a frame
    on every step."""

    update_type: str
    update_frequency: float
    polyak_coef: float

    @classmethod
    def from_spec(cls, net_cfg: Any) -> "TargetUpdate":
        """From a typed net spec (its defaults, ``replace`` every frame, are the schema's)."""
        return cls(net_cfg.update_type, net_cfg.update_frequency, float(net_cfg.polyak_coef))

    def __call__(self, pairs: Sequence[tuple[nn.Module, nn.Module]], frame: int, num_envs: int) -> None:
        """Update each (target, net) pair at the current ``frame``."""
        if self.update_type == "polyak":
            for target, net in pairs:
                polyak_update(target, net, self.polyak_coef)
        elif frame % self.update_frequency < num_envs:
            for target, net in pairs:
                copy_weights(target, net)


class ReturnNormalizer:
    """Scales value predictions and targets by a running std of the targets (``normalize_v_targets``).

    Large, growing returns make the value loss dominate a shared net and shift as the policy improves; dividing by
    a running std keeps the value loss O(1). The mean is tracked but never subtracted, so the sign and zero of V are
    preserved. σ = max(√(var + 1e-8), 1) never amplifies small returns; outputs are clamped to ±10.

    Usage: ``norm.update(v_targets)`` once per batch, then ``loss(norm.normalize(v_preds), norm.normalize(v_targets))``.
    """

    def __init__(self, clip: float = 10.0, epsilon: float = 1e-8) -> None:
        self.clip = clip
        self.epsilon = epsilon
        self.count = 0.0
        self.mean = 0.0
        self.var = 1.0

    def update(self, x: Tensor) -> None:
        """Merge the batch mean/variance of ``x`` into the running ones (Chan et al.'s parallel formula)."""
        if x.numel() == 0:
            return
        x = x.detach().double().flatten()
        b_var, b_mean = torch.var_mean(x, unbiased=False)
        b_var_f, b_mean_f = (float(v) for v in torch.stack([b_var, b_mean]).tolist())
        b_count = float(x.numel())
        total = self.count + b_count
        delta = b_mean_f - self.mean
        m2 = self.var * self.count + b_var_f * b_count + delta * delta * self.count * b_count / total
        self.mean += delta * b_count / total
        self.var = m2 / total
        self.count = total

    @property
    def std(self) -> float:
        return max(math.sqrt(self.var + self.epsilon), 1.0)

    def normalize(self, x: Tensor) -> Tensor:
        return (x / self.std).clamp(-self.clip, self.clip)

    def state_dict(self) -> dict[str, float]:
        return {"count": self.count, "mean": self.mean, "var": self.var}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.count, self.mean, self.var = float(state["count"]), float(state["mean"]), float(state["var"])


class PercentileNormalizer:
    """Divides advantages by max(1, P95 − P5), with the percentiles tracked as an EMA (``normalize_advantages:
    percentile``).

    Unlike per-minibatch standardization this keeps the advantages' sign and relative scale across batches, and
    never scales up small advantages (the max with 1), which matters with sparse rewards (Hafner et al. 2023).
    Both EMAs start at 0.
    """

    def __init__(self, decay: float = 0.99, low: float = 0.05, high: float = 0.95) -> None:
        assert 0.0 <= low < high <= 1.0, f"bad percentiles {low}, {high}"
        self.decay = decay
        self.low, self.high = low, high
        self.p_low = 0.0
        self.p_high = 0.0

    def update(self, advs: Tensor) -> None:
        """Fold this batch's percentiles into the EMAs."""
        if advs.numel() == 0:
            return
        x = advs.detach().flatten().float()
        q = torch.quantile(x, torch.tensor([self.low, self.high], device=x.device, dtype=x.dtype))
        q_low, q_high = (float(v) for v in q.tolist())
        self.p_low = self.decay * self.p_low + (1.0 - self.decay) * q_low
        self.p_high = self.decay * self.p_high + (1.0 - self.decay) * q_high

    @property
    def scale(self) -> float:
        return max(1.0, self.p_high - self.p_low)

    def normalize(self, advs: Tensor) -> Tensor:
        return advs / self.scale

    def state_dict(self) -> dict[str, float]:
        return {"p_low": self.p_low, "p_high": self.p_high}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.p_low, self.p_high = float(state["p_low"]), float(state["p_high"])
