"""Soft Actor-Critic (continuous and discrete): the maximum-entropy off-policy actor-critic CrossQ builds on.

Both learn a stochastic policy ``net`` and twin Q critics ``q1_net``/``q2_net`` from replay, with an entropy
temperature α that is tuned automatically toward a target entropy H̄ (or fixed). SAC bootstraps from target copies
of the critics; CrossQ has no target nets and instead normalises its critics with batch renormalization over the
joint batch of current and next state-actions.
"""

import copy
import math
import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from loguru import logger
from torch import nn

from slm_lab.agent.algorithm.base import ALGORITHMS, Algorithm
from slm_lab.agent.algorithm.policy_gradient import policy_out_dim
from slm_lab.agent.memory.base import ReplayBatch
from slm_lab.agent.net import NETS, OptimPair, train_step
from slm_lab.agent.net.base import net_config
from slm_lab.agent.net.builder import build_loss, build_optimizer, component_kwargs, grad_clip, net_in_dim
from slm_lab.agent.net.layers import apply_spectral_norm
from slm_lab.errors import SpecError
from slm_lab.lib.distribution import get_action_type, squashed_normal_sample
from slm_lab.lib.math_util import TargetUpdate, calc_q_targets, symlog, weighted_mean
from slm_lab.lib.schedule import build_lr_scheduler
from slm_lab.spec.schema_algorithm import AlgorithmSpec

__all__ = ["SoftActorCritic", "squashed_normal_sample"]

# action_pdtype values that mean "the tanh-squashed Normal" for continuous SAC
_CONTINUOUS_PDTYPES = (None, "default", "Normal", "NormalTanh")
_ENTROPY_EMA = 0.99  # SD-SAC's running entropy
# action_pdtype values for discrete SAC. GumbelSoftmax, which the reference's discrete specs name, is accepted as the
# same policy: its hard samples are categorical samples, and the lab's update takes the exact expectation over the
# actions (Christodoulou 2019) instead of a relaxed sample, so it needs no reparameterisation
_DISCRETE_PDTYPES = (None, "default", "Categorical", "GumbelSoftmax")


def _split_loc_log_std(out: torch.Tensor | list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The actor's output as (loc, log_std), each (B, A): one (B, 2) tail for a 1-D action, else two tails."""
    if isinstance(out, torch.Tensor):
        return out[..., :1], out[..., 1:]
    return out[0], out[1]


@ALGORITHMS.register("SoftActorCritic")
class SoftActorCritic(Algorithm):
    """Soft Actor-Critic (Haarnoja et al. 2018, https://arxiv.org/abs/1812.05905; discrete actions: Christodoulou
    2019, https://arxiv.org/abs/1910.07207).

    Nets, all from ``agent.net``: the actor ``net``, twin critics ``q1_net``/``q2_net`` (continuous: [s ‖ a] -> 1;
    discrete: s -> |A|) and their targets ``target_q1_net``/``target_q2_net``, which start as copies. α = exp(log α)
    starts at 1 and has its own optimizer (a copy of the actor's ``optim_spec``, ``alpha_lr`` overriding the lr).

    Acting: uniform-random actions while frame < ``training_start_step``, then samples of π (evaluation modes act
    with the mode). Continuous actions are tanh-squashed into the env's [−1, 1] and stored squashed.

    Each ``train()`` runs ``training_iter`` iterations (default ``num_envs``), one opt_step each:

    1. Critic target, without gradient, with a′ ~ π(s′): continuous V(s′) = min(Q1ᵗ, Q2ᵗ)(s′, a′) − α log π(a′|s′);
       discrete V(s′) = Σ_a π(a|s′)[(Q1ᵗ + Q2ᵗ)/2 − α log π(a|s′)]; y = r + γ(1 − terminated)·V(s′).
    2. Critic step on mean(w · loss_fn(Q_i(s, a), y)) for both critics (w: PER importance weights, else 1; both
       sides symlog-compressed with ``symlog``); PER priorities become |min(Q1, Q2)(s, a) − y|.
    3. Every ``policy_delay`` iterations: the actor step on mean(α log π(ã|s) − min(Q1, Q2)(s, ã)) with a
       reparameterised ã (discrete: mean Σ_a π(α log π − (Q1 + Q2)/2), Q detached, plus the optional SD-SAC
       penalty β·½(H_ema − H)²); the α step on −mean(α(log π + H̄)) (discrete: −α(H̄ − H)), then log α is clamped
       to [``log_alpha_min``, ``log_alpha_max``]; then the target update (``polyak`` with τ = ``polyak_coef``, or
       ``replace`` when frame % ``update_frequency`` < num_envs).

    H̄ (``target_entropy: auto``): continuous −dim(A); discrete ``entropy_anneal.start_ratio``·log|A|, annealed
    linearly to ``end_ratio`` over ``frames``. ``fixed_alpha`` replaces tuning with a constant α, annealed linearly
    to 0 over ``alpha_anneal_frames`` when that is set. ``spectral_norm`` puts spectral normalization on each
    critic's penultimate Linear layer. The returned loss is the summed critic loss.

    Spec example::

        {"name": "SoftActorCritic", "action_pdtype": "Normal", "action_policy": "default", "gamma": 0.99,
         "training_frequency": 1, "training_iter": 4, "training_start_step": 256}
    """

    uses_target_nets = True
    diagnostics = ("entropy", "alpha")  # the policy's mean entropy and α after the last actor update

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
        algo, net_spec = spec["agent"]["algorithm"], spec["agent"]["net"]
        name = algo["name"]
        cfg = self.cfg
        self.gamma = float(cfg.gamma)
        self.num_envs = env.num_envs
        self.action_space = env.action_space
        action_type = get_action_type(env.action_space)
        self.discrete = action_type == "discrete"
        self._check_action_settings(name, action_type)
        self.action_dim = int(env.action_dim)
        self.training_iter = int(cfg.training_iter or self.num_envs)
        self.training_start_step = int(getattr(memory, "training_start_step", 0))
        self.policy_delay = int(cfg.policy_delay)
        self.symlog = bool(cfg.symlog)

        # nets: the actor, twin critics and (SAC) their targets, all on one device (D30)
        NetClass = NETS.get(net_spec["type"], "agent.net.type")
        net_cfg = net_config(net_spec, net_spec["type"])  # the typed actor spec, defaults from the schema
        self.net = NetClass(
            net_cfg, net_in_dim(NetClass, env.state_dim), policy_out_dim(action_type, self.action_dim, None)
        ).to(device)
        self.flat_input = bool(getattr(self.net, "flat_input", True))
        critic_spec, critic_key = self.critic_net_spec(spec)
        CriticClass = NETS.get(critic_spec["type"], f"{critic_key}.type")
        critic_type = critic_spec["type"]
        critic_spec = net_config(critic_spec, critic_type, critic_key)
        critic_in: int | tuple[int, ...] = net_in_dim(CriticClass, env.state_dim)
        critic_out = self.action_dim
        if not self.discrete:  # continuous critics read [s ‖ a], a flat vector
            if not isinstance(critic_in, int) and len(critic_in) > 1:
                raise SpecError(
                    f"{critic_key}.type: continuous {name} critics take [state ‖ action] as one flat vector; "
                    f"{critic_type} needs {tuple(critic_in)}-shaped observations, use an MLP critic"
                )
            critic_in, critic_out = int(np.prod(critic_in)) + self.action_dim, 1
        self.q1_net = CriticClass(critic_spec, critic_in, critic_out).to(device)
        self.q2_net = CriticClass(critic_spec, critic_in, critic_out).to(device)
        if cfg.spectral_norm:
            for critic in (self.q1_net, self.q2_net):
                try:
                    apply_spectral_norm(critic)
                except ValueError as e:
                    raise SpecError(f"agent.algorithm.spectral_norm: {e}") from None
        self.nets = {"net": self.net, "q1_net": self.q1_net, "q2_net": self.q2_net}
        self.target_q1_net: nn.Module | None = None
        self.target_q2_net: nn.Module | None = None
        if self.uses_target_nets:
            self.target_q1_net = copy.deepcopy(self.q1_net).requires_grad_(False)
            self.target_q2_net = copy.deepcopy(self.q2_net).requires_grad_(False)
            self.nets.update(target_q1_net=self.target_q1_net, target_q2_net=self.target_q2_net)
        self.target_update = TargetUpdate.from_spec(net_cfg)

        # optimizers and LR schedulers
        frames_per_train = max(1, int(cfg.training_frequency) * self.num_envs)
        for net_name, net, net_key, ns in (
            ("net", self.net, "agent.net", net_cfg),
            ("q1_net", self.q1_net, critic_key, critic_spec),
            ("q2_net", self.q2_net, critic_key, critic_spec),
        ):
            self.optims[net_name] = build_optimizer(ns.optim_spec, net.parameters(), f"{net_key}.optim_spec")
            scheduler_spec = ns.lr_scheduler_spec
            self.lr_schedulers[net_name] = build_lr_scheduler(
                self.optims[net_name],
                None if scheduler_spec is None else component_kwargs(scheduler_spec),
                frames_per_train,
            )
        self.actor_pairs = [OptimPair(self.net, self.optims["net"], grad_clip(net_cfg))]
        self.critic_pairs = [
            OptimPair(self.q1_net, self.optims["q1_net"], grad_clip(critic_spec)),
            OptimPair(self.q2_net, self.optims["q2_net"], grad_clip(critic_spec)),
        ]
        self.critic_params = [p for pair in self.critic_pairs for p in pair.params]
        self.loss_fn = build_loss({**component_kwargs(critic_spec.loss_spec), "reduction": "none"})

        # entropy temperature α
        self.log_alpha = torch.zeros(1, device=device, requires_grad=cfg.fixed_alpha is None)
        self.alpha_optim: torch.optim.Optimizer | None = None
        if cfg.fixed_alpha is None:
            alpha_optim_spec = component_kwargs(net_cfg.optim_spec)
            if cfg.alpha_lr is not None:
                alpha_optim_spec["lr"] = float(cfg.alpha_lr)
            self.alpha_optim = build_optimizer(alpha_optim_spec, [self.log_alpha], "agent.net.optim_spec")
        self.entropy_ema: float | None = None  # SD-SAC's running policy entropy
        self.critic_iter = 0  # critic iterations so far, for policy_delay
        self.train_stats["alpha"] = self.alpha.detach()  # the α column has its value from the first row
        if not self.eval_mode:
            vector_steps_per_train = max(1, math.ceil(int(cfg.training_frequency) / self.num_envs))
            logger.info(
                f"{name}: {self.training_iter / (vector_steps_per_train * self.num_envs):.3g} gradient steps per "
                f"frame; {self.training_start_step} frames of random warm-up"
            )

    @staticmethod
    def memory_algorithm_spec(algorithm_spec: dict[str, Any], memory_spec: dict[str, Any]) -> dict[str, Any]:
        if algorithm_spec.get("training_start_step") is not None:
            return algorithm_spec
        batch_size = int(memory_spec.get("batch_size") or 0)
        return {**algorithm_spec, "training_start_step": max(1000, batch_size)}

    def critic_net_spec(self, spec: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """The critics' net spec and its spec key: SAC's critics use ``agent.net``."""
        return spec["agent"]["net"], "agent.net"

    def _check_action_settings(self, name: str, action_type: str) -> None:
        cfg = self.cfg
        if action_type not in ("discrete", "continuous", "multi_continuous"):
            raise SpecError(
                f"agent.algorithm.name: {name} needs discrete or continuous (Box) actions, {self.env.name} has "
                f"{action_type} actions"
            )
        pdtype = cfg.action_pdtype
        if self.discrete and pdtype not in _DISCRETE_PDTYPES:
            raise SpecError(
                f"agent.algorithm.action_pdtype: discrete {name} must use Categorical (or GumbelSoftmax), got "
                f"{pdtype!r}"
            )
        if not self.discrete and pdtype not in _CONTINUOUS_PDTYPES:
            raise SpecError(
                f"agent.algorithm.action_pdtype: continuous {name} acts with a tanh-squashed Normal; use 'Normal' "
                f"(or 'default'), got {pdtype!r}"
            )
        if cfg.action_policy not in (None, "default"):
            raise SpecError(
                f"agent.algorithm.action_policy: {name} samples its own policy; use 'default', got "
                f"{cfg.action_policy!r}"
            )

    # entropy temperature -------------------------------------------------------------------------------------
    @property
    def alpha(self) -> torch.Tensor:
        """The current α as a 0-dim tensor without gradient: exp(log α), or the (annealed) ``fixed_alpha``."""
        cfg = self.cfg
        if cfg.fixed_alpha is None:
            return self.log_alpha.detach().exp().squeeze(0)
        alpha = float(cfg.fixed_alpha)
        if cfg.alpha_anneal_frames > 0:
            alpha *= max(0.0, 1.0 - self.clock.frame / cfg.alpha_anneal_frames)
        return torch.tensor(alpha, device=self.device)

    @property
    def target_entropy(self) -> float:
        """H̄: a number from ``target_entropy``, else −dim(A) (continuous) or the annealed ratio·log|A| (discrete)."""
        cfg = self.cfg
        if cfg.target_entropy != "auto":
            return float(cfg.target_entropy)
        if not self.discrete:
            return -float(np.prod(self.action_space.shape))
        anneal = cfg.entropy_anneal
        end = anneal.start_ratio if anneal.end_ratio is None else anneal.end_ratio
        progress = min(1.0, self.clock.frame / anneal.frames) if anneal.frames > 0 else 1.0
        return (anneal.start_ratio + (end - anneal.start_ratio) * progress) * math.log(self.action_dim)

    # acting --------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, state: np.ndarray) -> np.ndarray:
        if not self.eval_mode and self.clock.frame < self.training_start_step:
            return self.random_actions()
        out = self.net(self.to_tensor(state))
        if self.discrete:
            action = (
                out.argmax(-1) if self.eval_mode else torch.multinomial(F.softmax(out, -1), 1).squeeze(-1)
            )
            return action.cpu().numpy()
        loc, log_std = _split_loc_log_std(out)
        action = torch.tanh(loc) if self.eval_mode else squashed_normal_sample(loc, log_std)[0]
        return action.cpu().numpy().reshape(self.num_envs, -1)

    def random_actions(self) -> np.ndarray:
        """Uniform actions for the warm-up, from torch's seeded generator: one per env copy."""
        if self.discrete:
            return torch.randint(self.action_dim, (self.num_envs,)).numpy()
        return (torch.rand(self.num_envs, self.action_dim) * 2.0 - 1.0).numpy()

    # forward passes ------------------------------------------------------------------------------------------
    def policy(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Continuous: (a, log π(a|s)) for a reparameterised sample. Discrete: (π(·|s), log π(·|s)), each (B, |A|)."""
        out = self.net(states)
        if self.discrete:
            log_probs = F.log_softmax(out, -1)
            return log_probs.exp(), log_probs
        return squashed_normal_sample(*_split_loc_log_std(out))

    def critic_input(self, states: torch.Tensor, actions: torch.Tensor | None) -> torch.Tensor:
        """What a critic takes: [s ‖ a] for continuous actions, s for discrete ones."""
        return states if self.discrete else torch.cat([states, actions.reshape(len(states), -1)], -1)  # type: ignore[union-attr]

    def soft_value(
        self, q1: torch.Tensor, q2: torch.Tensor, pi: torch.Tensor, log_pi: torch.Tensor, alpha: torch.Tensor
    ) -> torch.Tensor:
        """V(s) = min(Q1, Q2) − α log π(a|s) for a sampled a (continuous), or Σ_a π(a|s)[(Q1 + Q2)/2 − α log π(a|s)]
        (discrete, the exact expectation; the twin average, not the min)."""
        if self.discrete:
            return (pi * (0.5 * (q1 + q2) - alpha * log_pi)).sum(-1)
        return torch.min(q1, q2).squeeze(-1) - alpha * log_pi

    def taken_q(self, q: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Q(s, a) of the stored actions as (B,): a gather for discrete critics, the single output otherwise."""
        if self.discrete:
            return q.gather(-1, actions.long().reshape(-1, 1)).squeeze(-1)
        return q.squeeze(-1)

    # training ------------------------------------------------------------------------------------------------
    def train(self) -> float:
        if not self.memory.ready():
            return math.nan
        losses = [self.train_iteration(self.memory.sample()) for _ in range(self.training_iter)]
        self.step_lr_schedulers()
        return float(torch.stack(losses).mean())

    def step_lr_schedulers(self) -> None:
        """Every scheduler steps once per ``train()``, so that all nets follow the same frame horizon. With
        ``policy_delay`` > ``training_iter`` the actor's first train() calls have no actor step yet, for which torch
        warns that the schedule skips its first value; that is intended here, so the warning is silenced."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
            super().step_lr_schedulers()

    def train_iteration(self, batch: ReplayBatch) -> torch.Tensor:
        """One critic step and, every ``policy_delay`` iterations, the actor, α and target updates; one opt_step."""
        states = self.to_tensor(batch.states)
        alpha = self.alpha
        q1, q2, q_targets = self.critic_predictions(batch, states, alpha)
        critic_loss = self.critic_loss(q1, q_targets, batch.weights) + self.critic_loss(
            q2, q_targets, batch.weights
        )
        stepped = self.count_update(train_step(critic_loss, self.critic_pairs, self.checker, self.strict))
        if self.memory.updates_priorities:
            self.memory.update_priorities(batch.indices, (torch.min(q1, q2).detach() - q_targets).abs())
        self.critic_iter += 1
        if self.critic_iter % self.policy_delay == 0:
            self.train_actor_alpha(states, alpha)
            self.update_targets()
        if stepped:
            self.clock.tick_opt_step()
        return critic_loss.detach()

    def critic_predictions(
        self, batch: ReplayBatch, states: torch.Tensor, alpha: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Q1(s, a), Q2(s, a) with gradient and the target y (no gradient), from the target critics."""
        assert self.target_q1_net is not None and self.target_q2_net is not None
        with torch.no_grad():
            next_states = self.to_tensor(batch.next_states)
            pi, log_pi = self.policy(next_states)
            x_next = self.critic_input(next_states, pi)
            v_next = self.soft_value(
                self.target_q1_net(x_next), self.target_q2_net(x_next), pi, log_pi, alpha
            )
            q_targets = calc_q_targets(batch.rewards, batch.terminateds, v_next, self.gamma)
        x = self.critic_input(states, batch.actions)
        return (
            self.taken_q(self.q1_net(x), batch.actions),
            self.taken_q(self.q2_net(x), batch.actions),
            q_targets,
        )

    def critic_loss(
        self, q: torch.Tensor, q_targets: torch.Tensor, weights: torch.Tensor | None
    ) -> torch.Tensor:
        """mean(w · loss_fn(Q, y)), both sides symlog-compressed when ``symlog`` is on."""
        if self.symlog:
            q, q_targets = symlog(q), symlog(q_targets)
        return weighted_mean(self.loss_fn(q, q_targets), weights)

    def train_actor_alpha(self, states: torch.Tensor, alpha: torch.Tensor) -> None:
        """The actor step against the current critics (their parameters frozen), then the α step."""
        for p in self.critic_params:
            p.requires_grad_(False)
        try:
            pi, log_pi = self.policy(states)
            if self.discrete:
                with torch.no_grad():
                    x = self.critic_input(states, None)
                    q_mean = 0.5 * (self.q1_net(x) + self.q2_net(x))
                actor_loss = (pi * (alpha * log_pi - q_mean)).sum(-1).mean()
                entropy = -(pi * log_pi).sum(-1).mean()
                actor_loss = actor_loss + self.entropy_penalty(entropy)
            else:
                x = self.critic_input(states, pi)
                q = torch.min(self.q1_net(x), self.q2_net(x)).squeeze(-1)
                actor_loss = (alpha * log_pi - q).mean()
                entropy = -log_pi.mean()
        finally:
            for p in self.critic_params:
                p.requires_grad_(True)
        self.count_update(train_step(actor_loss, self.actor_pairs, self.checker, self.strict))
        entropy = entropy.detach()
        self.train_stats["entropy"] = entropy
        self.train_alpha(entropy)
        self.train_stats["alpha"] = self.alpha.detach()

    def entropy_penalty(self, entropy: torch.Tensor) -> torch.Tensor | float:
        """SD-SAC (Zhou et al. 2022): β·½(H_ema − H)², which damps sudden entropy changes; H_ema is an EMA (0.99) of the
        policy entropy. Zero unless ``entropy_penalty_coef`` is set."""
        beta = float(self.cfg.entropy_penalty_coef)
        if beta == 0.0:
            return 0.0
        value = float(entropy.detach())
        ema = (
            value
            if self.entropy_ema is None
            else _ENTROPY_EMA * self.entropy_ema + (1 - _ENTROPY_EMA) * value
        )
        self.entropy_ema = ema
        return beta * 0.5 * (ema - entropy).square()

    def train_alpha(self, entropy: torch.Tensor) -> None:
        """α step on α(H − H̄) (the policy entropy H estimated as −mean log π), then clamp log α. α grows when the
        policy is less random than the target and shrinks when it is more."""
        if self.alpha_optim is None:
            return
        alpha_loss = self.log_alpha.exp().squeeze(0) * (entropy - self.target_entropy)
        self.alpha_optim.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_optim.step()
        with torch.no_grad():
            self.log_alpha.clamp_(float(self.cfg.log_alpha_min), float(self.cfg.log_alpha_max))

    def update_targets(self) -> None:
        """Target critics follow the critics by the net spec's ``TargetUpdate`` rule (none for CrossQ)."""
        if self.target_q1_net is None or self.target_q2_net is None:
            return
        pairs = [(self.target_q1_net, self.q1_net), (self.target_q2_net, self.q2_net)]
        self.target_update(pairs, self.clock.frame, self.num_envs)

    # state ---------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Schedulers plus log α, its optimizer, the SD-SAC entropy EMA and the policy-delay counter (D34)."""
        return {
            **super().state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "alpha_optim": self.alpha_optim.state_dict() if self.alpha_optim is not None else None,
            "entropy_ema": self.entropy_ema,
            "critic_iter": self.critic_iter,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        if self.alpha_optim is not None and state["alpha_optim"] is not None:
            self.alpha_optim.load_state_dict(state["alpha_optim"])
        self.entropy_ema = state["entropy_ema"]
        self.critic_iter = int(state["critic_iter"])
        self.train_stats["alpha"] = self.alpha.detach()
