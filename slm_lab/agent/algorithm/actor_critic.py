"""Advantage actor-critic (A2C; A3C when distributed)."""

import math
from typing import Any

import torch

from slm_lab.agent.algorithm.base import ALGORITHMS
from slm_lab.agent.algorithm.policy_gradient import PolicyGradient
from slm_lab.agent.memory.base import OnPolicyBatch
from slm_lab.lib.math_util import calc_gaes, calc_nstep_returns, calc_returns

__all__ = ["ActorCritic"]


@ALGORITHMS.register("ActorCritic")
class ActorCritic(PolicyGradient):
    """Advantage actor-critic (Mnih et al. 2016, https://arxiv.org/abs/1602.01783), synchronous.

    Each update, on the rollout or episodes in memory:
    1. V(s) with gradient, and V(s′) of the true next states without (truncated steps bootstrap from V of the final
       observation, D6);
    2. advantages: GAE when ``lam`` is set (target A + V); else n-step returns R when ``num_step_returns`` is set
       (A = R − V); else Monte-Carlo returns (A = G − V);
    3. L = −c_pg·mean(log π(a|s)·standardize(A)) − β·mean(H) + c_v·loss_fn(V, V_target), one step for a shared net,
       one step per net for separate actor and critic.

    Spec example::

        {"name": "ActorCritic", "action_pdtype": "default", "action_policy": "default", "gamma": 0.99,
         "lam": 0.95, "num_step_returns": null, "entropy_coef_spec": {"name": "no_decay", "start_val": 0.01},
         "val_loss_coef": 0.5, "training_frequency": 32}
    """

    @staticmethod
    def training_frequency(algorithm_spec: dict[str, Any]) -> int:
        """n-step returns (``lam`` null) train every ``num_step_returns`` steps."""
        n = algorithm_spec.get("num_step_returns")
        if algorithm_spec.get("lam") is None and n is not None:
            return int(n)
        return int(algorithm_spec.get("training_frequency") or 1)

    def frames_per_train(self) -> int:
        return max(1, self.training_frequency(self.spec["agent"]["algorithm"]) * self.num_envs)

    def calc_advs_v_targets(
        self, batch: OnPolicyBatch, v: torch.Tensor, v_next: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Advantages and value targets, (T, N) each, by the spec's mode (GAE, n-step or Monte-Carlo)."""
        cfg = self.cfg
        if cfg.lam is not None:
            advs = calc_gaes(
                batch.rewards, v, v_next, batch.terminateds, batch.truncateds, self.gamma, cfg.lam
            )
            return advs, advs + v
        if cfg.num_step_returns is not None:
            rets = calc_nstep_returns(
                batch.rewards,
                batch.terminateds,
                batch.truncateds,
                v_next,
                self.gamma,
                int(cfg.num_step_returns),
            )
        else:
            rets = calc_returns(
                batch.rewards, batch.terminateds, batch.truncateds, self.gamma, trunc_values=v_next
            )
        return rets - v, rets

    def train_on_policy(self) -> float:
        if not self.memory.ready():
            return math.nan
        batch: OnPolicyBatch = self.memory.sample()
        T, N = batch.rewards.shape
        states = self.to_tensor(batch.states.flatten(0, 1))
        pdparam, v = self.calc_pdparam_v(states)
        assert v is not None
        with torch.no_grad():
            v_next = self.calc_v_batched(self.to_tensor(batch.next_states.flatten(0, 1))).view(T, N)
            advs, v_targets = self.calc_advs_v_targets(batch, v.detach().view(T, N), v_next)
            if self.return_normalizer is not None:
                self.return_normalizer.update(v_targets)
            self.update_adv_normalizer(advs)
        logp, entropy = self.log_prob_entropy(pdparam, batch.actions.flatten(0, 1))
        terms = {
            **self.policy_loss(logp, advs.flatten(), entropy),
            "value": self.value_loss(v, v_targets.flatten()),
        }
        loss = terms["policy"] + terms["value"]
        self.step(loss, self.pairs)
        self.step_lr_schedulers()
        self.record_diagnostics([terms])
        return float(loss.detach())
