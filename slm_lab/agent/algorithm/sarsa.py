"""SARSA: on-policy TD learning of Q on the action actually taken next."""

import math
from typing import Any

import torch

from slm_lab.agent.algorithm.base import ALGORITHMS
from slm_lab.agent.algorithm.value_based import ValueBased
from slm_lab.agent.memory.base import OnPolicyBatch
from slm_lab.lib.math_util import calc_q_targets
from slm_lab.spec.schema_algorithm import AlgorithmSpec

__all__ = ["SARSA"]


@ALGORITHMS.register("SARSA")
class SARSA(ValueBased):
    """SARSA (Rummery & Niranjan 1994; Sutton & Barto, section 6.4) with a Q-net.

    Each update, on a rollout of ``training_frequency`` vector steps from ``OnPolicyBatchReplay``:
    1. a′ of each transition is the action the agent actually took next in that env copy (D19). The last vector step
       of a rollout does not know its a′ yet, so it is held back and trained with the next rollout;
    2. at a truncation the next stored action already belongs to a new episode, so a′ is drawn from the current
       policy at the true final observation; at a termination there is no bootstrap;
    3. one gradient step on loss_fn(Q(s, a), r + γ(1 − terminated)·Q(s′, a′)), the target without gradient.

    Spec example::

        {"name": "SARSA", "action_pdtype": "Argmax", "action_policy": "epsilon_greedy",
         "explore_var_spec": {"name": "linear_decay", "start_val": 1.0, "end_val": 0.05, "start_step": 0,
                              "end_step": 10000},
         "gamma": 0.99, "training_frequency": 32}
    """

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
        self.held: OnPolicyBatch | None = None  # the previous rollout's last vector step, awaiting its a′

    def train(self) -> float:
        if not self.memory.ready():
            return math.nan
        batch: OnPolicyBatch = self.memory.sample()
        if self.held is not None:
            batch = OnPolicyBatch(*(torch.cat([h, b]) for h, b in zip(self.held, batch, strict=True)))
        self.held = OnPolicyBatch(*(x[-1:] for x in batch))
        if len(batch.rewards) < 2:
            return math.nan
        cur = OnPolicyBatch(*(x[:-1] for x in batch))
        states, next_states = (
            self.to_tensor(cur.states.flatten(0, 1)),
            self.to_tensor(cur.next_states.flatten(0, 1)),
        )
        actions = cur.actions.flatten().long()
        truncateds = cur.truncateds.flatten()
        with torch.no_grad():
            next_q_all = self.net(next_states)
            next_actions = batch.actions[1:].flatten().long()
            if truncateds.any():
                drawn = self.policy(
                    self.pdtype, next_q_all, self.explore_var, self.action_space, len(next_states)
                )
                next_actions = torch.where(
                    truncateds, torch.as_tensor(drawn, device=self.device).long(), next_actions
                )
            next_q = next_q_all.gather(-1, next_actions.unsqueeze(-1)).squeeze(-1)
            q_targets = calc_q_targets(cur.rewards.flatten(), cur.terminateds.flatten(), next_q, self.gamma)
        q = self.net(states).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        loss = self.weighted_loss(q, q_targets, None)
        self.step(loss, self.pairs)
        self.step_lr_schedulers()
        return float(loss.detach())

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["held"] = None if self.held is None else self.held._asdict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.held = None if state["held"] is None else OnPolicyBatch(**state["held"])
