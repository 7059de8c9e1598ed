"""Self-Imitation Learning (Oh et al. 2018, https://arxiv.org/abs/1806.05635): the part a policy-gradient algorithm
adds when its class turns ``self_imitation`` on (SIL, PPOSIL)."""

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from pydantic import ValidationError

from slm_lab.agent.memory.base import MEMORIES, ReplayBatch
from slm_lab.agent.memory.onpolicy import OnPolicyReplay
from slm_lab.errors import SpecError
from slm_lab.lib.math_util import calc_returns

if TYPE_CHECKING:
    from slm_lab.agent.algorithm.policy_gradient import PolicyGradient

__all__ = ["SelfImitation"]

_PER_KEYS = ("alpha", "epsilon", "beta", "beta_end")


class SelfImitation:
    """Imitates the agent's own past actions where they did better than the critic expects.

    1. Every on-policy transition is also assembled into episodes per env copy. When an episode ends, the discounted
       return R of each of its transitions is computed over that whole episode (bootstrapped from V of the final
       observation at a truncation) and (s, a, R) enter a replay of class ``memory.sil_replay_name`` (D20). The
       replay's reward column holds R.
    2. After each on-policy update, once the replay holds more than ``training_start_step`` transitions:
       ``training_iter`` × (sample; ``training_batch_iter`` × one step on
       L = −c_sp·mean(log π(a|s)·A⁺) + c_sv·mean(A⁺²)/2, with A⁺ = max(R − V(s), 0), detached in the policy term).
       With prioritized replay, A⁺ are the new priorities and the importance weights multiply both terms.
    """

    def __init__(
        self, algorithm: "PolicyGradient", spec: dict[str, Any], env: Any, device: torch.device
    ) -> None:
        memory_spec, cfg = spec["agent"]["memory"], algorithm.cfg
        for key in ("sil_replay_name", "batch_size", "max_size"):
            if memory_spec.get(key) is None:
                raise SpecError(f"agent.memory.{key}: required by {cfg.name} for its self-imitation replay")
        replay_spec = {
            "name": memory_spec["sil_replay_name"],
            "batch_size": memory_spec["batch_size"],
            "max_size": memory_spec["max_size"],
            "use_cer": bool(memory_spec.get("use_cer", False)),
            **{k: memory_spec[k] for k in _PER_KEYS if memory_spec.get(k) is not None},
        }
        replay_cls = MEMORIES.get(replay_spec["name"], "agent.memory.sil_replay_name")
        try:
            self.replay = replay_cls.from_spec(
                replay_spec, env=env, algorithm_spec={"training_start_step": cfg.training_start_step},
                training_frequency=1, device=device,
            )  # fmt: skip
        except ValidationError as e:
            problems = "; ".join(
                f"agent.memory.{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()
            )
            raise SpecError(f"{replay_spec['name']} replay of {cfg.name}: {problems}") from None
        self.episodes = OnPolicyReplay.from_spec(
            {"name": "OnPolicyReplay"},
            env=env,
            algorithm_spec={},
            training_frequency=1,
            device=torch.device("cpu"),
        )
        self.algorithm = algorithm
        # absent: one batch; an explicit 0 starts at once (D20)
        start = cfg.training_start_step
        self.training_start_step = int(memory_spec["batch_size"] if start is None else start)
        self.training_iter, self.training_batch_iter = int(cfg.training_iter), int(cfg.training_batch_iter)
        self.policy_coef, self.value_coef = float(cfg.sil_policy_loss_coef), float(cfg.sil_val_loss_coef)

    def observe(self, state: np.ndarray, action: np.ndarray, step: Any) -> None:
        """Record one vector step; store the transitions of every episode that just ended, with their returns."""
        self.episodes.update(state, action, step.reward, step.next_state, step.terminated, step.truncated)
        if not self.episodes.ready():
            return
        ep = self.episodes.sample()  # completed episodes as one (L, 1, ...) stream, cut at each episode end
        trunc_values = None
        if ep.truncateds.any():
            with torch.no_grad():
                next_states = self.algorithm.to_tensor(ep.next_states.flatten(0, 1))
                trunc_values = self.algorithm.calc_v(next_states).cpu().view_as(ep.rewards)
        returns = calc_returns(ep.rewards, ep.terminateds, ep.truncateds, self.algorithm.gamma, trunc_values)
        states, no = ep.states[:, 0].numpy(), np.zeros(len(returns), dtype=np.bool_)
        self.replay.update(states, ep.actions[:, 0].numpy(), returns[:, 0].numpy(), states, no, no)

    def train(self) -> float:
        """The self-imitation updates; NaN until the replay holds more than ``training_start_step``."""
        if self.replay.seen <= self.training_start_step:
            return math.nan
        algo, losses = self.algorithm, []
        for _ in range(self.training_iter):
            batch: ReplayBatch = self.replay.sample()
            states = algo.to_tensor(batch.states)
            for _ in range(self.training_batch_iter):
                pdparam, v = algo.calc_pdparam_v(states)
                assert v is not None
                logp, _ = algo.log_prob_entropy(pdparam, batch.actions)
                advs = torch.clamp(batch.rewards - v, min=0.0)  # A⁺ = max(R − V(s), 0)
                w = batch.weights if batch.weights is not None else 1.0
                policy_loss = -(logp * advs.detach() * w).mean()
                value_loss = (advs.pow(2) * w).mean() / 2
                loss = self.policy_coef * policy_loss + self.value_coef * value_loss
                algo.step(loss, algo.pairs)
                losses.append(loss.detach())
            if self.replay.updates_priorities:
                self.replay.update_priorities(batch.indices, advs.detach())
        return float(torch.stack(losses).mean())

    def state_dict(self) -> dict[str, Any]:
        return {"replay": self.replay.state_dict(), "episodes": self.episodes.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.replay.load_state_dict(state["replay"])
        self.episodes.load_state_dict(state["episodes"])
