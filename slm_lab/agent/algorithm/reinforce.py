"""REINFORCE: Monte-Carlo policy gradient."""

import math

from slm_lab.agent.algorithm.base import ALGORITHMS
from slm_lab.agent.algorithm.policy_gradient import PolicyGradient
from slm_lab.agent.memory.base import OnPolicyBatch
from slm_lab.lib.math_util import calc_returns

__all__ = ["Reinforce"]


@ALGORITHMS.register("Reinforce")
class Reinforce(PolicyGradient):
    """REINFORCE (Williams 1992) with an optional entropy bonus.

    Each update, on the episodes (``OnPolicyReplay``) or rollout (``OnPolicyBatchReplay``) in memory:
    1. Monte-Carlo returns G_t = r_t + γ(1 − d_t)·G_{t+1}, cut at every episode end and not bootstrapped (no critic);
       optionally mean-centred (``center_return``);
    2. L = −c_pg·mean(log π(a|s)·normalize(G)) − β·mean(H[π(·|s)]), β from ``entropy_coef_spec`` (0 without it),
       with G standardized per batch unless ``normalize_advantages`` says otherwise;
    3. one gradient step.

    Spec example::

        {"name": "Reinforce", "action_pdtype": "default", "action_policy": "default", "center_return": true,
         "entropy_coef_spec": {"name": "linear_decay", "start_val": 0.01, "end_val": 0.001, "start_step": 0,
                               "end_step": 20000},
         "gamma": 0.99, "training_frequency": 1}
    """

    has_critic = False

    def train_on_policy(self) -> float:
        if not self.memory.ready():
            return math.nan
        batch: OnPolicyBatch = self.memory.sample()
        returns = calc_returns(batch.rewards, batch.terminateds, batch.truncateds, self.gamma).flatten()
        if self.cfg.center_return:
            returns = returns - returns.mean()
        self.update_adv_normalizer(returns)
        pdparam, _ = self.calc_pdparam_v(self.to_tensor(batch.states.flatten(0, 1)), need_v=False)
        logp, entropy = self.log_prob_entropy(pdparam, batch.actions.flatten(0, 1))
        terms = self.policy_loss(logp, returns, entropy)
        loss = terms["policy"]
        self.step(loss, self.pairs)
        self.step_lr_schedulers()
        self.record_diagnostics([terms])
        return float(loss.detach())
