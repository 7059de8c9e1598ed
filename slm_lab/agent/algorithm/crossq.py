"""CrossQ: Soft Actor-Critic without target networks, its critics normalised over current and next state-actions."""

from typing import Any

import torch

from slm_lab.agent.algorithm.base import ALGORITHMS
from slm_lab.agent.algorithm.sac import SoftActorCritic
from slm_lab.agent.memory.base import ReplayBatch
from slm_lab.lib.math_util import calc_q_targets

__all__ = ["CrossQ"]


@ALGORITHMS.register("CrossQ")
class CrossQ(SoftActorCritic):
    """CrossQ (Bhatt et al. 2024, https://arxiv.org/abs/1902.05605): SAC without target networks.

    The critics come from ``agent.critic_net`` when it is given (typically with ``batch_renorm``), else from
    ``agent.net``. Each iteration, with the critics in train mode, a′ ~ π(s′) is drawn without gradient and each
    critic runs once on the joint batch [[s ‖ a]; [s′ ‖ a′]] (discrete: [s; s′]), so that its normalisation
    statistics cover both halves; the target comes from the detached next half (continuous min, discrete average)
    minus α log π. Every ``policy_delay`` iterations the critics switch to eval mode (frozen running statistics)
    for the actor and α updates. There is no target update.

    Spec example::

        {"name": "CrossQ", "action_pdtype": "Normal", "action_policy": "default", "gamma": 0.99,
         "training_frequency": 1, "training_iter": 4, "training_start_step": 256, "policy_delay": 3}
    """

    uses_target_nets = False

    def critic_net_spec(self, spec: dict[str, Any]) -> tuple[dict[str, Any], str]:
        critic_net = spec["agent"].get("critic_net")
        return (critic_net, "agent.critic_net") if critic_net else (spec["agent"]["net"], "agent.net")

    def critic_predictions(
        self, batch: ReplayBatch, states: torch.Tensor, alpha: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch_size = len(states)
        next_states = self.to_tensor(batch.next_states)
        with torch.no_grad():
            pi_next, log_pi_next = self.policy(next_states)
        x = torch.cat([self.critic_input(states, batch.actions), self.critic_input(next_states, pi_next)])
        q1_all, q2_all = self.q1_net(x), self.q2_net(x)
        q1, q1_next = q1_all[:batch_size], q1_all[batch_size:].detach()
        q2, q2_next = q2_all[:batch_size], q2_all[batch_size:].detach()
        v_next = self.soft_value(q1_next, q2_next, pi_next, log_pi_next, alpha)
        q_targets = calc_q_targets(batch.rewards, batch.terminateds, v_next, self.gamma)
        return self.taken_q(q1, batch.actions), self.taken_q(q2, batch.actions), q_targets

    def train_actor_alpha(self, states: torch.Tensor, alpha: torch.Tensor) -> None:
        self.q1_net.eval()
        self.q2_net.eval()
        try:
            super().train_actor_alpha(states, alpha)
        finally:
            self.q1_net.train()
            self.q2_net.train()
