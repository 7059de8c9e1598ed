"""Machinery shared by the policy-gradient family (Reinforce, ActorCritic, PPO): nets, acting, values, log-probs.

``PolicyGradient`` builds a policy ``net`` and, for classes with a critic, either one shared net (policy outputs plus
one value unit, last) or a separate ``critic_net`` with its own optimizer and LR scheduler, routing
``actor_*``/``critic_*`` net keys to each, and the critic's value loss. Subclasses write ``train_on_policy``; a class
with ``self_imitation`` on follows each of those updates with the ``SelfImitation`` updates (SIL, PPOSIL).
"""

import math
from abc import abstractmethod
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from slm_lab.agent.algorithm.base import Algorithm
from slm_lab.agent.algorithm.policy import ACTION_POLICIES
from slm_lab.agent.algorithm.self_imitation import SelfImitation
from slm_lab.agent.net import NETS, OptimPair
from slm_lab.agent.net.base import net_config
from slm_lab.agent.net.builder import (
    build_loss,
    build_optimizer,
    component_kwargs,
    grad_clip,
    init_output_layer,
    net_in_dim,
)
from slm_lab.lib.distribution import entropy_sum, get_action_type, log_prob_sum, make_pd, resolve_pdtype
from slm_lab.lib.math_util import PercentileNormalizer, ReturnNormalizer, standardize
from slm_lab.lib.schedule import VarScheduler, build_lr_scheduler
from slm_lab.spec.schema import NetSpec, route_net_spec
from slm_lab.spec.schema_algorithm import AlgorithmSpec

__all__ = ["PolicyGradient", "policy_out_dim"]

# Beta actions are kept this far inside (0, 1), where its log-density is finite
_BETA_EPS = 1e-6
# forward passes over a whole rollout without gradient go in chunks of this many rows
V_CHUNK = 4096


def policy_out_dim(
    action_type: str, action_dim: int | list[int], log_std_init: float | None
) -> int | list[int]:
    """Net output size(s) for the policy head."""
    if action_type == "discrete":
        return int(action_dim)  # type: ignore[arg-type]
    if action_type == "multi_discrete":
        return list(action_dim)  # type: ignore[arg-type]
    if action_type == "multi_binary":
        return int(action_dim)  # type: ignore[arg-type]
    a = int(action_dim)  # type: ignore[arg-type]
    if action_type == "continuous" and log_std_init is None:
        return 2  # one tail giving loc and log-scale
    return [a, a]


class PolicyGradient(Algorithm):
    """A policy net (and a value estimate when ``has_critic``), acting through the action policy, batched no-grad
    value estimates, log-probabilities, entropies and the value loss.

    ``train`` runs ``train_on_policy`` on the rollout in memory and, when the class turns ``self_imitation`` on,
    the self-imitation updates after it; the loss reported is their sum.
    """

    has_critic: ClassVar[bool] = True
    self_imitation: ClassVar[bool] = False
    diagnostics = ("entropy",)

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
        self.gamma = float(self.cfg.gamma)
        self.num_envs = env.num_envs
        self.action_space = env.action_space
        self.action_type = get_action_type(env.action_space)
        self.pdtype = resolve_pdtype(self.action_type, self.cfg.action_pdtype)
        self.policy = ACTION_POLICIES.get(
            self.cfg.action_policy or "default", "agent.algorithm.action_policy"
        )
        self.continuous = self.action_type in ("continuous", "multi_continuous")
        self.adv_normalizer = (
            PercentileNormalizer() if self.cfg.normalize_advantages == "percentile" else None
        )
        self._clip: dict[str, float | None] = {}
        self._init_var_schedulers()
        self._init_nets(spec["agent"]["net"])
        self.flat_input = bool(getattr(self.net, "flat_input", True))
        if self.has_critic:
            self.val_loss_coef = float(self.cfg.val_loss_coef)
        normalize_v_targets = self.has_critic and self.cfg.normalize_v_targets
        self.return_normalizer = ReturnNormalizer() if normalize_v_targets else None
        self.sil = SelfImitation(self, spec, env, device) if self.self_imitation else None

    # construction --------------------------------------------------------------------------------------------
    def _init_var_schedulers(self) -> None:
        cfg = self.cfg
        specs = {"explore_var": cfg.explore_var_spec, "entropy_coef": cfg.entropy_coef_spec}
        for name, var_spec in specs.items():
            if var_spec is not None:
                self.var_schedulers[name] = self._var_scheduler(var_spec)

    def _var_scheduler(self, var_spec: Any) -> VarScheduler:
        d = var_spec.model_dump() if hasattr(var_spec, "model_dump") else dict(var_spec)
        scheduler = VarScheduler(d)
        if self.eval_mode:
            scheduler.set_eval(True)
        scheduler.update(self.clock.frame)
        return scheduler

    def frames_per_train(self) -> int:
        """Frames between ``train()`` calls, used to convert LR horizons in frames into scheduler steps."""
        return max(1, int(self.cfg.training_frequency or 1) * self.num_envs)

    def _init_nets(self, net_spec: dict[str, Any]) -> None:
        env = self.env
        self.shared = bool(net_spec.get("shared", False))
        self.critic_net: nn.Module | None = None
        actor_spec = route_net_spec(net_spec, "actor")
        critic_spec = route_net_spec(net_spec, "critic")
        if net_spec.get("use_same_optim"):
            critic_spec["optim_spec"] = actor_spec.get("optim_spec")
            critic_spec["lr_scheduler_spec"] = actor_spec.get("lr_scheduler_spec")
        NetClass = NETS.get(net_spec["type"], "agent.net.type")
        # the typed actor and critic specs (their schema models): every net, optimizer and loss is built from them
        actor_spec = net_config(actor_spec, net_spec["type"])
        critic_spec = net_config(critic_spec, net_spec["type"])
        in_dim = net_in_dim(NetClass, env.state_dim)
        out = policy_out_dim(self.action_type, env.action_dim, actor_spec.log_std_init)
        self.n_policy_out = len(out) if isinstance(out, list) else 1
        if not self.has_critic:
            self.net = NetClass(actor_spec, in_dim, out).to(self.device)
            self.nets = {"net": self.net}
            policy_tails, value_tails = list(self.net.tails), []
            self._add_optim("net", self.net, actor_spec)
        elif self.shared:
            outs = [*out, 1] if isinstance(out, list) else [out, 1]
            self.net = NetClass(actor_spec, in_dim, outs).to(self.device)
            self.nets = {"net": self.net}
            policy_tails, value_tails = list(self.net.tails)[:-1], [self.net.tails[-1]]
            self._add_optim("net", self.net, actor_spec)
        else:
            self.net = NetClass(actor_spec, in_dim, out).to(self.device)
            self.critic_net = NetClass(critic_spec, in_dim, 1).to(self.device)
            self.nets = {"net": self.net, "critic_net": self.critic_net}
            policy_tails, value_tails = list(self.net.tails), list(self.critic_net.tails)
            self._add_optim("net", self.net, actor_spec)
            self._add_optim("critic_net", self.critic_net, critic_spec)
        # D3: actor_init_std / critic_init_std re-initialise the output layers, shared or separate
        if actor_spec.actor_init_std is not None:
            for tail in policy_tails:
                init_output_layer(tail, float(actor_spec.actor_init_std))
        if actor_spec.critic_init_std is not None:
            for tail in value_tails:
                init_output_layer(tail, float(actor_spec.critic_init_std))
        self.loss_fn = build_loss(critic_spec.loss_spec)
        self.pairs = [
            OptimPair(self.nets[name], optim, self._clip[name]) for name, optim in self.optims.items()
        ]

    def _add_optim(self, name: str, net: nn.Module, net_cfg: NetSpec) -> None:
        key = "agent.net." + self._optim_key(name)
        optim = build_optimizer(net_cfg.optim_spec, net.parameters(), key)
        self.optims[name] = optim
        scheduler_spec = net_cfg.lr_scheduler_spec
        self.lr_schedulers[name] = build_lr_scheduler(
            optim,
            None if scheduler_spec is None else component_kwargs(scheduler_spec),
            self.frames_per_train(),
        )
        self._clip[name] = grad_clip(net_cfg)

    def _optim_key(self, name: str) -> str:
        """The spec key the optimizer of net ``name`` came from, for error messages: ``optim_spec`` or its routed
        form ``actor_optim_spec`` / ``critic_optim_spec`` (the actor's with ``use_same_optim``)."""
        raw = self.spec["agent"]["net"]
        role = "critic" if name == "critic_net" and not raw.get("use_same_optim") else "actor"
        routed = f"{role}_optim_spec"
        return routed if routed in raw and self.has_critic else "optim_spec"

    # forward passes ------------------------------------------------------------------------------------------
    def calc_pdparam_v(self, x: torch.Tensor, need_v: bool = True) -> tuple[Any, torch.Tensor | None]:
        """Policy distribution parameters and (optionally) state values V(x) of shape (B,)."""
        if self.shared and self.has_critic:
            outs = self.net(x)
            pdparam = outs[0] if self.n_policy_out == 1 else outs[: self.n_policy_out]
            return pdparam, outs[-1].squeeze(-1)
        pdparam = self.net(x)
        v = self.critic_net(x).squeeze(-1) if need_v and self.critic_net is not None else None
        return pdparam, v

    def calc_v(self, x: torch.Tensor) -> torch.Tensor:
        if self.shared:
            return self.net(x)[-1].squeeze(-1)
        assert self.critic_net is not None
        return self.critic_net(x).squeeze(-1)

    @torch.no_grad()
    def calc_v_batched(self, x: torch.Tensor) -> torch.Tensor:
        """V over a whole rollout, without gradient, in chunks."""
        if len(x) <= V_CHUNK:
            return self.calc_v(x)
        return torch.cat([self.calc_v(chunk) for chunk in x.split(V_CHUNK)])

    def log_prob_entropy(self, pdparam: Any, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """log π(a|s) and H[π(·|s)], summed over action dimensions for multi-dimensional actions."""
        pd = make_pd(self.pdtype, pdparam)
        if self.pdtype == "Beta":  # env actions in [-1, 1] back to the Beta's support (0, 1)
            actions = ((actions + 1.0) / 2.0).clamp(_BETA_EPS, 1.0 - _BETA_EPS)
        return log_prob_sum(pd, actions), entropy_sum(pd)

    def update_adv_normalizer(self, weights: torch.Tensor) -> None:
        """Fold a batch's policy-gradient weights into the percentile EMAs (``normalize_advantages: percentile``);
        once per batch, before its losses."""
        if self.adv_normalizer is not None:
            self.adv_normalizer.update(weights)

    def normalize_advantages(self, weights: torch.Tensor) -> torch.Tensor:
        """The policy-gradient weights as ``normalize_advantages`` says: ``standardize`` (per batch, or per
        minibatch in PPO), ``percentile`` (divided by the EMA range of the 5th to 95th percentile, at least 1) or
        ``none``."""
        mode = self.cfg.normalize_advantages
        if mode == "standardize":
            return standardize(weights)
        if mode == "percentile":
            assert self.adv_normalizer is not None
            return self.adv_normalizer.normalize(weights)
        return weights

    def policy_loss(
        self, logp: torch.Tensor, weights: torch.Tensor, entropy: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The policy-gradient loss and its terms: ``policy`` = −c_pg·mean(log π·normalize(weights)) − β·mean(H),
        with weights the returns (Reinforce) or advantages (ActorCritic), normalised by ``normalize_advantages``
        and β from ``entropy_coef_spec`` (0 without it); ``entropy`` = mean(H), detached."""
        mean_entropy = entropy.mean()
        loss = -float(self.cfg.policy_loss_coef) * (logp * self.normalize_advantages(weights)).mean()
        if "entropy_coef" in self.var_schedulers:
            loss = loss - self.var_schedulers["entropy_coef"].val * mean_entropy
        return {"policy": loss, "entropy": mean_entropy.detach()}

    def value_loss(self, v: torch.Tensor, v_targets: torch.Tensor) -> torch.Tensor:
        """c_v·loss_fn(V, V_target), both scaled by the running return std with ``normalize_v_targets``."""
        if self.return_normalizer is not None:
            v, v_targets = self.return_normalizer.normalize(v), self.return_normalizer.normalize(v_targets)
        return self.val_loss_coef * self.loss_fn(v, v_targets)

    def normalizers(self) -> dict[str, PercentileNormalizer | ReturnNormalizer]:
        """The running normalisers whose statistics are part of the resume state, by name."""
        found: dict[str, PercentileNormalizer | ReturnNormalizer] = {}
        if self.adv_normalizer is not None:
            found["adv_normalizer"] = self.adv_normalizer
        if self.return_normalizer is not None:
            found["return_normalizer"] = self.return_normalizer
        return found

    # learning ------------------------------------------------------------------------------------------------
    @abstractmethod
    def train_on_policy(self) -> float:
        """One update on the rollout in memory if it is ready; the loss, or NaN."""

    def train(self) -> float:
        loss = self.train_on_policy()
        if self.sil is None or math.isnan(loss):
            return loss
        sil_loss = self.sil.train()
        return loss if math.isnan(sil_loss) else loss + sil_loss

    def on_step(self, state: np.ndarray, action: np.ndarray, step: Any) -> None:
        if self.sil is not None:
            self.sil.observe(state, action, step)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["normalizers"] = {k: n.state_dict() for k, n in self.normalizers().items()}
        if self.sil is not None:
            state["sil"] = self.sil.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        for k, n in self.normalizers().items():
            n.load_state_dict(state["normalizers"][k])
        if self.sil is not None:
            self.sil.load_state_dict(state["sil"])

    @torch.no_grad()
    def act(self, state: np.ndarray) -> np.ndarray:
        x = self.to_tensor(state)
        pdparam, _ = self.calc_pdparam_v(x, need_v=False)
        explore_var = (
            self.var_schedulers["explore_var"].val if "explore_var" in self.var_schedulers else math.nan
        )
        action = self.policy(self.pdtype, pdparam, explore_var, self.action_space, self.num_envs)
        action = action.cpu().numpy() if isinstance(action, torch.Tensor) else np.asarray(action)
        if (
            self.pdtype == "Beta"
        ):  # a Beta sample x ∈ (0, 1) acts as 2x − 1 ∈ (−1, 1), the env's normalised range
            action = 2.0 * action - 1.0
        if self.continuous:
            action = action.reshape(self.num_envs, -1)
        return action
