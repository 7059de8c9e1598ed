"""The DQN family: VanillaDQN, DQNBase, DQN and DoubleDQN, which differ only in the bootstrap value X of the TD
target y = r + γ(1 − terminated)·X (D1)."""

import math

import torch

from slm_lab.agent.algorithm.base import ALGORITHMS
from slm_lab.agent.algorithm.value_based import ValueBased
from slm_lab.agent.memory.base import ReplayBatch
from slm_lab.lib.math_util import calc_q_targets

__all__ = ["DQN", "DQNBase", "DoubleDQN", "VanillaDQN"]


@ALGORITHMS.register("VanillaDQN")
class VanillaDQN(ValueBased):
    """Deep Q-learning from replay (Mnih et al. 2013, https://arxiv.org/abs/1312.5602), without a target net.

    Each ``train()`` (when the replay memory's trigger fires):
    1. ``training_iter`` times: sample a batch and compute y = r + γ(1 − terminated)·X without gradient;
    2. ``training_batch_iter`` gradient steps on mean(w · loss_fn(Q(s, a), y)) (w: PER importance weights, else 1);
    3. with prioritized replay, |y − Q(s, a)| becomes the sampled transitions' new priorities.
    The LR scheduler steps once per ``train()``; the mean loss is returned. Here X = max_a Q_net(s', a).

    Spec example::

        {"name": "VanillaDQN", "action_pdtype": "Argmax", "action_policy": "epsilon_greedy",
         "explore_var_spec": {"name": "linear_decay", "start_val": 1.0, "end_val": 0.1, "start_step": 0,
                              "end_step": 3000},
         "gamma": 0.99, "training_frequency": 4, "training_iter": 2, "training_batch_iter": 2,
         "training_start_step": 32}
    """

    def calc_next_q(self, next_states: torch.Tensor) -> torch.Tensor:
        """X: the bootstrap value of each true next state."""
        return self.net(next_states).max(dim=-1).values

    def train(self) -> float:
        if not self.memory.ready():
            return math.nan
        losses = []
        for _ in range(int(self.cfg.training_iter)):
            batch: ReplayBatch = self.memory.sample()
            states, actions = self.to_tensor(batch.states), batch.actions.long().unsqueeze(-1)
            with torch.no_grad():
                next_q = self.calc_next_q(self.to_tensor(batch.next_states))
                q_targets = calc_q_targets(batch.rewards, batch.terminateds, next_q, self.gamma)
            for _ in range(int(self.cfg.training_batch_iter)):
                q = self.net(states).gather(-1, actions).squeeze(-1)
                loss = self.weighted_loss(q, q_targets, batch.weights)
                self.step(loss, self.pairs)
                losses.append(loss.detach())
            if self.memory.updates_priorities:
                self.memory.update_priorities(batch.indices, (q_targets - q.detach()).abs())
        self.step_lr_schedulers()
        return float(torch.stack(losses).mean())


def target_max_q(target_net: torch.nn.Module | None, next_states: torch.Tensor) -> torch.Tensor:
    """max_a Q_target(s', a): select and evaluate with the target net."""
    assert target_net is not None
    return target_net(next_states).max(dim=-1).values


@ALGORITHMS.register("DQNBase")
class DQNBase(VanillaDQN):
    """DQN whose target net is copied from ``net`` after every vector step (it takes no update keys)."""

    uses_target_net = True

    def calc_next_q(self, next_states: torch.Tensor) -> torch.Tensor:
        return target_max_q(self.target_net, next_states)


@ALGORITHMS.register("DQN")
class DQN(VanillaDQN):
    """Nature DQN (Mnih et al. 2015): X = max_a Q_target(s', a), selected and evaluated by the target net, which
    follows ``net`` by ``replace`` every ``update_frequency`` frames or by ``polyak`` averaging with τ =
    ``polyak_coef`` every vector step.

    Spec example::

        {"name": "DQN", "gamma": 0.99, "training_frequency": 4, "training_iter": 1, "training_batch_iter": 1}
    """

    uses_target_net = True

    def calc_next_q(self, next_states: torch.Tensor) -> torch.Tensor:
        return target_max_q(self.target_net, next_states)


@ALGORITHMS.register("DoubleDQN")
class DoubleDQN(VanillaDQN):
    """Double DQN (van Hasselt et al. 2016, https://arxiv.org/abs/1509.06461): the online net selects a' and the
    target net evaluates it, X = Q_target(s', argmax_a Q_net(s', a)).

    Spec example::

        {"name": "DoubleDQN", "gamma": 0.99, "training_frequency": 4, "training_iter": 1, "training_batch_iter": 1}
    """

    uses_target_net = True

    def calc_next_q(self, next_states: torch.Tensor) -> torch.Tensor:
        assert self.target_net is not None
        best = self.net(next_states).argmax(dim=-1, keepdim=True)
        return self.target_net(next_states).gather(-1, best).squeeze(-1)
