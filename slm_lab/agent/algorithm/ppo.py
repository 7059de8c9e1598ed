"""Proximal Policy Optimization with a clipped surrogate objective."""

import math
from typing import Any

import torch

from slm_lab.agent.algorithm.base import ALGORITHMS
from slm_lab.agent.algorithm.policy_gradient import PolicyGradient
from slm_lab.agent.memory.base import OnPolicyBatch
from slm_lab.lib.math_util import calc_gaes, explained_variance, symlog
from slm_lab.spec.schema_algorithm import AlgorithmSpec

__all__ = ["PPO"]


@ALGORITHMS.register("PPO")
class PPO(PolicyGradient):
    """PPO-Clip (Schulman et al. 2017, https://arxiv.org/abs/1707.06347).

    Each update, on a rollout of ``time_horizon`` vector steps (T·N transitions):
    1. V(s) and V(s') of the true next states, and log π_old(a|s), all without gradient;
    2. GAE advantages A and value targets V_t = A + V(s) (recursions stop at terminated ∨ truncated; truncated
       steps bootstrap from V of the final observation, D6);
    3. ``training_epoch`` passes over a random permutation split into minibatches; per minibatch
       ratio = exp(log π − log π_old), L_clip = −mean(min(ratio·A, clip(ratio, 1±ε)·A)), minus β·entropy, plus the
       value loss; one step for a shared net, one step per net for separate nets.

    Diagnostics (dataframe columns), means over the update's minibatches: ``entropy``; ``approx_kl``, the estimate
    mean((r − 1) − log r) of KL(π_old ‖ π) with r the ratio (low variance, never negative); ``clip_fraction``, the
    share of ratios outside 1 ± ε; and ``explained_variance`` 1 − Var(V_t − V)/Var(V_t) of the values before the
    update (1: the critic predicts the targets, 0: no better than their mean).

    Spec example::

        {"name": "PPO", "gamma": 0.99, "lam": 0.95, "time_horizon": 128, "minibatch_size": 64,
         "training_epoch": 4, "clip_eps_spec": {"name": "no_decay", "start_val": 0.2, "end_val": 0.2},
         "entropy_coef_spec": {"name": "no_decay", "start_val": 0.01, "end_val": 0.01}, "val_loss_coef": 0.5}
    """

    diagnostics = ("entropy", "approx_kl", "clip_fraction", "explained_variance")

    def __init__(
        self,
        *,
        spec: dict[str, Any],
        env: Any,
        memory: Any,
        device: torch.device,
        mode: str,
        cfg: AlgorithmSpec,
    ) -> None:
        super().__init__(spec=spec, env=env, memory=memory, device=device, mode=mode, cfg=cfg)
        cfg = self.cfg
        self.lam = float(cfg.lam)
        self.training_epoch = int(cfg.training_epoch)
        self.minibatch_size = int(cfg.minibatch_size)
        self.clip_vloss = bool(cfg.clip_vloss)
        self.use_symlog = bool(cfg.symlog)
        self.var_schedulers["clip_eps"] = self._var_scheduler(cfg.clip_eps_spec)

    @staticmethod
    def training_frequency(algorithm_spec: dict[str, Any]) -> int:
        """PPO trains every ``time_horizon`` vector steps."""
        return int(algorithm_spec["time_horizon"])

    def frames_per_train(self) -> int:
        return max(1, int(self.cfg.time_horizon) * self.num_envs)

    def train_on_policy(self) -> float:
        if not self.memory.ready():
            return math.nan
        batch: OnPolicyBatch = self.memory.sample()
        T, N = batch.rewards.shape
        states = self.to_tensor(batch.states.flatten(0, 1))
        actions = batch.actions.flatten(0, 1)
        with torch.no_grad():
            v = self.calc_v_batched(states)
            v_next = self.calc_v_batched(self.to_tensor(batch.next_states.flatten(0, 1)))
            advs = calc_gaes(
                batch.rewards, v.view(T, N), v_next.view(T, N), batch.terminateds, batch.truncateds,
                self.gamma, self.lam,
            ).flatten()  # fmt: skip
            v_targets = advs + v
            old_logp = torch.cat(
                [
                    self.log_prob_entropy(self.calc_pdparam_v(x, need_v=False)[0], a)[0]
                    for x, a in zip(states.split(4096), actions.split(4096), strict=True)
                ]
            )
            if self.return_normalizer is not None:
                self.return_normalizer.update(v_targets)
            self.update_adv_normalizer(advs)
        batch_size = T * N
        minibatch_size = min(self.minibatch_size, batch_size)
        terms = []
        for _ in range(self.training_epoch):
            for idx in torch.randperm(batch_size, device=self.device).split(minibatch_size):
                minibatch = self.calc_loss(
                    states[idx], actions[idx], advs[idx], v_targets[idx], v[idx], old_logp[idx]
                )
                self.step(minibatch["loss"], self.pairs)
                terms.append({**minibatch, "loss": minibatch["loss"].detach()})  # keep no graph past its step
        self.step_lr_schedulers()
        self.record_diagnostics(terms)
        self.train_stats["explained_variance"] = explained_variance(v, v_targets)
        return float(torch.stack([t["loss"] for t in terms]).mean())

    def calc_loss(
        self,
        states: torch.Tensor,
        actions: torch.Tensor,
        advs: torch.Tensor,
        v_targets: torch.Tensor,
        v_old: torch.Tensor,
        old_logp: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """A minibatch's loss and its named terms: ``loss`` = L_clip − β·H + value loss, the one to minimise, and
        detached: ``policy`` (L_clip), ``value``, ``entropy`` (mean H), ``approx_kl`` and ``clip_fraction``."""
        clip_eps = self.var_schedulers["clip_eps"].val
        entropy_coef = (
            self.var_schedulers["entropy_coef"].val if "entropy_coef" in self.var_schedulers else 0.0
        )
        pdparam, v = self.calc_pdparam_v(states)
        logp, entropy = self.log_prob_entropy(pdparam, actions)
        advs = self.normalize_advantages(advs)
        log_ratio = torch.clamp(logp - old_logp, -20.0, 20.0)
        ratio = torch.exp(log_ratio)
        surr1 = ratio * advs
        surr2 = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advs
        clip_loss = -torch.min(surr1, surr2).mean()
        entropy = entropy.mean()
        policy_loss = clip_loss - entropy_coef * entropy
        value_loss = self.calc_value_loss(v, v_targets, v_old, clip_eps)
        with torch.no_grad():
            approx_kl = ((ratio - 1.0) - log_ratio).mean()
            clip_fraction = ((ratio - 1.0).abs() > clip_eps).float().mean()
        return {
            "loss": policy_loss + value_loss,
            "policy": clip_loss.detach(),
            "value": value_loss.detach(),
            "entropy": entropy.detach(),
            "approx_kl": approx_kl,
            "clip_fraction": clip_fraction,
        }

    def calc_value_loss(
        self, v: torch.Tensor, v_targets: torch.Tensor, v_old: torch.Tensor, clip_eps: float
    ) -> torch.Tensor:
        """c_v·loss_fn(V, V_t), or with ``clip_vloss`` 0.5·c_v·mean(max((V−V_t)², (V_old + clip(V−V_old, ±ε) − V_t)²)).

        The ½ on the clipped form only is the reference's (tuned coefficients depend on it, D28).
        """
        if self.return_normalizer is not None:
            v, v_targets, v_old = (self.return_normalizer.normalize(x) for x in (v, v_targets, v_old))
        if self.use_symlog:
            v, v_targets, v_old = symlog(v), symlog(v_targets), symlog(v_old)
        if self.clip_vloss:
            v_clipped = v_old + torch.clamp(v - v_old, -clip_eps, clip_eps)
            return (
                0.5
                * self.val_loss_coef
                * torch.max((v - v_targets) ** 2, (v_clipped - v_targets) ** 2).mean()
            )
        return self.val_loss_coef * self.loss_fn(v, v_targets)
