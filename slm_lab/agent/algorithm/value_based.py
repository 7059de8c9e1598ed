"""Machinery shared by the value-based algorithms (SARSA and the DQN family): a Q-net, exploring policies, and
an optional target net with ``replace`` or ``polyak`` updates."""

import copy
import math
from typing import Any, ClassVar

import numpy as np
import torch
from loguru import logger
from torch import nn

from slm_lab.agent.algorithm.base import Algorithm
from slm_lab.agent.algorithm.policy import ACTION_POLICIES
from slm_lab.agent.net import NETS, OptimPair
from slm_lab.agent.net.base import net_config
from slm_lab.agent.net.builder import build_loss, build_optimizer, component_kwargs, grad_clip, net_in_dim
from slm_lab.errors import SpecError
from slm_lab.lib.distribution import get_action_type, resolve_pdtype
from slm_lab.lib.math_util import TargetUpdate, weighted_mean
from slm_lab.lib.schedule import VarScheduler, build_lr_scheduler
from slm_lab.spec.schema_algorithm import AlgorithmSpec

__all__ = ["ValueBased"]


class ValueBased(Algorithm):
    """A Q-net over discrete actions (``net``), acting with ``epsilon_greedy`` (default) or ``boltzmann`` on the Q
    values, and for classes with ``uses_target_net`` a ``target_net`` that starts as a copy of ``net``.

    The loss function is built with ``reduction="none"`` so that prioritized replay can weight each sample.
    """

    uses_target_net: ClassVar[bool] = False

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
        self.gamma = float(self.cfg.gamma)
        self.num_envs = env.num_envs
        self.action_space = env.action_space
        action_type = get_action_type(env.action_space)
        if action_type != "discrete":
            raise SpecError(f"agent.algorithm.name: {algo['name']} needs a discrete action space, {env.name} has "
                            f"{action_type} actions")  # fmt: skip
        pdtype = self.cfg.action_pdtype
        self.pdtype = resolve_pdtype(action_type, "Argmax" if pdtype in (None, "default") else pdtype)
        policy = self.cfg.action_policy
        self.policy = ACTION_POLICIES.get("epsilon_greedy" if policy in (None, "default") else policy,
                                          "agent.algorithm.action_policy")  # fmt: skip
        if self.cfg.explore_var_spec is not None:
            scheduler = VarScheduler(
                self.cfg.explore_var_spec.model_dump(), "agent.algorithm.explore_var_spec"
            )
            scheduler.set_eval(self.eval_mode)
            scheduler.update(self.clock.frame)
            self.var_schedulers["explore_var"] = scheduler
        NetClass = NETS.get(net_spec["type"], "agent.net.type")
        net_cfg = net_config(net_spec, net_spec["type"])  # the typed net spec, defaults from the schema
        self.net = NetClass(net_cfg, net_in_dim(NetClass, env.state_dim), int(env.action_dim)).to(device)
        self.flat_input = bool(getattr(self.net, "flat_input", True))
        self.nets = {"net": self.net}
        self.optims["net"] = build_optimizer(net_cfg.optim_spec, self.net.parameters())
        scheduler_spec = net_cfg.lr_scheduler_spec
        self.lr_schedulers["net"] = build_lr_scheduler(
            self.optims["net"],
            None if scheduler_spec is None else component_kwargs(scheduler_spec),
            self.frames_per_train(),
        )
        self.pairs = [OptimPair(self.net, self.optims["net"], grad_clip(net_cfg))]
        self.loss_fn = build_loss({**component_kwargs(net_cfg.loss_spec), "reduction": "none"})
        self.target_net: nn.Module | None = None
        if self.uses_target_net:
            self.target_net = copy.deepcopy(self.net).requires_grad_(False)
            self.nets["target_net"] = self.target_net
        if self.eval_mode is False and "training_iter" in type(self.cfg).model_fields:
            logger.info(f"{algo['name']}: {self.grad_steps_per_frame():.3g} gradient steps per frame")
        self.target_update = TargetUpdate.from_spec(net_cfg)

    def grad_steps_per_frame(self) -> float:
        """The update-to-data ratio (D15): replay trains at most once per vector step, once at least
        ``training_frequency`` transitions were stored since the last training."""
        cfg, n = self.cfg, self.num_envs
        vector_steps_per_train = max(1, math.ceil(int(cfg.training_frequency) / n))
        return int(cfg.training_iter) * int(cfg.training_batch_iter) / (vector_steps_per_train * n)

    def frames_per_train(self) -> int:
        return max(1, int(self.cfg.training_frequency or 1) * self.num_envs)

    @property
    def explore_var(self) -> float:
        scheduler = self.var_schedulers.get("explore_var")
        return scheduler.val if scheduler is not None else math.nan

    @torch.no_grad()
    def act(self, state: np.ndarray) -> np.ndarray:
        q = self.net(self.to_tensor(state))
        action = self.policy(self.pdtype, q, self.explore_var, self.action_space, self.num_envs)
        return action.cpu().numpy() if isinstance(action, torch.Tensor) else np.asarray(action)

    def weighted_loss(
        self, q: torch.Tensor, q_targets: torch.Tensor, weights: torch.Tensor | None
    ) -> torch.Tensor:
        """mean(w_i · loss_fn(Q_i, y_i)); uniform weights without prioritized replay."""
        return weighted_mean(self.loss_fn(q, q_targets), weights)

    def update(self) -> None:
        """VarSchedulers, then the target net (``TargetUpdate``: ``replace`` copies when
        ``frame % update_frequency < num_envs``; ``polyak`` does target ← lerp(target, net, τ) every vector step)."""
        super().update()
        if self.target_net is not None:
            self.target_update([(self.target_net, self.net)], self.clock.frame, self.num_envs)
