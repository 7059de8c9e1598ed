"""Algorithm base: owns nets, optimizers and schedulers, and saves/loads them."""

import contextlib
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from slm_lab.agent.memory.base import Memory
from slm_lab.agent.net.base import OptimPair, TrainingChecker, train_step
from slm_lab.lib.io_util import load_torch_file, save_torch_file, snapshot_file
from slm_lab.lib.schedule import VarScheduler
from slm_lab.registry import Registry
from slm_lab.spec.schema_algorithm import AlgorithmSpec

__all__ = ["ALGORITHMS", "Algorithm"]

ALGORITHMS: Registry[type["Algorithm"]] = Registry("algorithm")


class Algorithm(ABC):
    """Base of every algorithm: ``act``, ``train``, ``update``, save and load.

    Subclasses fill ``self.nets`` (net name -> module), ``self.optims`` (net name ->
    optimizer, for nets that learn), ``self.lr_schedulers`` (net name -> LR scheduler) and ``self.var_schedulers``
    (explore_var / entropy_coef / clip_eps). ``train()`` returns the loss, NaN when it did not train.

    Dataframe columns: besides the session's own (loss, lr, frame, ...), an algorithm adds ``grad_norm`` (dev and
    test modes), one column per VarScheduler (its current value) and the ``diagnostics`` its class declares, whose
    values its updates leave in ``train_stats`` (NaN until the first update sets them).
    """

    learns = True  # False for a baseline that never updates (Random): its session is not expected to train
    # the last update's diagnostics this class reports as dataframe columns, in column order
    diagnostics: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        *,
        spec: dict[str, Any],
        env: Any,
        memory: Memory,
        device: torch.device,
        mode: str,
        cfg: AlgorithmSpec,
    ) -> None:
        self.spec = spec
        self.cfg = cfg  # the typed agent.algorithm section (its schema model, defaults filled in there)
        self.env = env  # read-only: spaces, num_envs and the clock; learning code never steps the env
        self.clock = env.clock
        self.memory = memory
        self.device = device
        self.mode = mode
        self.eval_mode = mode in ("enjoy", "eval")
        self.nets: dict[str, nn.Module] = {}
        self.optims: dict[str, torch.optim.Optimizer] = {}
        self.lr_schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler] = {}
        self.var_schedulers: dict[str, VarScheduler] = {}
        self.train_stats: dict[str, float | torch.Tensor] = {}  # last update's diagnostics, e.g. entropy
        # updates run and skipped for a non-finite loss in this process: a session whose updates were mostly
        # skipped ends with an error instead of reporting a result it never learned
        self.updates = {"run": 0, "skipped": 0}
        self.flat_input = True  # nets take (B, D); set from the net after it is built
        strict = mode == "test"
        self.strict = strict
        self.checker = TrainingChecker(strict) if mode in ("dev", "test") else None

    @staticmethod
    def training_frequency(algorithm_spec: dict[str, Any]) -> int:
        """The memory's training cadence for this algorithm's spec (PPO overrides it with ``time_horizon``)."""
        return int(algorithm_spec.get("training_frequency") or 1)

    @staticmethod
    def memory_algorithm_spec(algorithm_spec: dict[str, Any], memory_spec: dict[str, Any]) -> dict[str, Any]:
        """The algorithm spec as the memory reads it, with this algorithm's defaults filled in (SAC defaults
        ``training_start_step`` to ``max(1000, batch_size)``)."""
        return algorithm_spec

    def to_tensor(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Observations to float32 on the device (uint8 frames are converted there, not on the CPU), flattened to
        (B, D) for nets that take flat inputs."""
        x = torch.as_tensor(x, device=self.device)
        if x.dtype != torch.float32:
            x = x.float()
        return x.flatten(1) if self.flat_input and x.dim() > 2 else x

    # acting and learning -------------------------------------------------------------------------------------
    @abstractmethod
    def act(self, state: np.ndarray) -> np.ndarray:
        """Actions for a batch of states (num_envs, ...), without gradient."""

    def on_step(self, state: np.ndarray, action: np.ndarray, step: Any) -> None:  # noqa: B027 - optional hook
        """Called with every vector step before training; algorithms that keep their own record (SIL) use it."""

    @abstractmethod
    def train(self) -> float:
        """Train if the memory is ready; return the loss or NaN."""

    @contextlib.contextmanager
    def evaluating(self) -> Iterator[None]:
        """Inside the block the algorithm acts as in an enjoy/eval run: explore vars at their end values, and the
        evaluation policy where the algorithm has one (SAC's mean action). Used by rigorous evaluation."""
        previous = self.eval_mode
        self.eval_mode = True
        for scheduler in self.var_schedulers.values():
            scheduler.set_eval(True)
        try:
            yield
        finally:
            self.eval_mode = previous
            for scheduler in self.var_schedulers.values():
                scheduler.set_eval(previous)

    def update(self) -> None:
        """Per-vector-step upkeep after ``train``: step the VarSchedulers to the current frame."""
        frame = self.clock.frame
        for scheduler in self.var_schedulers.values():
            scheduler.update(frame)

    def step(self, loss: torch.Tensor, pairs: list[OptimPair]) -> bool:
        """One optimizer step over ``pairs`` (see ``train_step``); counts one opt_step per optimizer. Returns
        whether it ran (False: skipped for a non-finite loss)."""
        ran = self.count_update(train_step(loss, pairs, self.checker, self.strict))
        if ran:
            self.clock.tick_opt_step(len(pairs))
        return ran

    def count_update(self, ran: bool) -> bool:
        """Count an update as run or skipped (``updates``); returns ``ran``."""
        self.updates["run" if ran else "skipped"] += 1
        return ran

    def step_lr_schedulers(self) -> None:
        for scheduler in self.lr_schedulers.values():
            scheduler.step()

    # logging -------------------------------------------------------------------------------------------------
    @property
    def lr(self) -> float:
        """Mean current learning rate over the LR schedulers (the ``lr`` column)."""
        lrs = [s.get_last_lr()[0] for s in self.lr_schedulers.values()]
        return float(np.mean(lrs)) if lrs else math.nan

    def df_extras(self) -> dict[str, float]:
        """The columns this algorithm adds to a dataframe row: grad_norm (dev/test), each VarScheduler's value in
        the order they were made, then the declared ``diagnostics``. Diagnostics may be kept as tensors; they are
        read here, once per checkpoint, so the training loop never waits on a device-to-host copy."""
        extras = {"grad_norm": self.checker.grad_norm} if self.checker is not None else {}
        extras.update((name, scheduler.val) for name, scheduler in self.var_schedulers.items())
        extras.update((name, float(self.train_stats.get(name, math.nan))) for name in self.diagnostics)
        return extras

    def record_diagnostics(self, terms: list[dict[str, torch.Tensor]]) -> None:
        """Keep the mean over an update's minibatches of each declared diagnostic found in the loss terms, as a
        tensor in ``train_stats`` (read at the next checkpoint, not now)."""
        for name in self.diagnostics:
            if terms and name in terms[0]:
                self.train_stats[name] = torch.stack([t[name] for t in terms]).mean()

    # state ---------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Non-net state: LR and var schedulers, and the last update's diagnostics (the entropy and grad_norm
        columns), so that a resumed session logs what an uninterrupted one would."""
        return {
            "lr_schedulers": {k: s.state_dict() for k, s in self.lr_schedulers.items()},
            "var_schedulers": {k: s.state_dict() for k, s in self.var_schedulers.items()},
            "train_stats": {k: float(v) for k, v in self.train_stats.items()},
            "grad_norm": None if self.checker is None else self.checker.grad_norm,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, s in state["lr_schedulers"].items():
            self.lr_schedulers[k].load_state_dict(s)
        for k, s in state["var_schedulers"].items():
            self.var_schedulers[k].load_state_dict(s)
        self.train_stats.update(state.get("train_stats") or {})
        if self.checker is not None and state.get("grad_norm") is not None:
            self.checker.grad_norm = float(state["grad_norm"])

    def net_state_dict(self) -> dict[str, Any]:
        """Every net's and optimizer's ``state_dict``, for the resume state (the model files hold them too, but are
        rewritten at every checkpoint, while the resume state is written less often)."""
        return {
            "nets": {name: net.state_dict() for name, net in self.nets.items()},
            "optims": {name: optim.state_dict() for name, optim in self.optims.items()},
        }

    def load_net_state_dict(self, state: dict[str, Any]) -> None:
        for name, net in self.nets.items():
            net.load_state_dict(state["nets"][name])
        for name, optim in self.optims.items():
            optim.load_state_dict(state["optims"][name])

    def model_files(self, model_prepath: str, ckpt: str | None = None) -> dict[str, Callable[[], Any]]:
        """``{model_prepath}[_{ckpt}]_{net}_model.pt`` and ``..._{net}_optim.pt`` -> the state each holds."""
        prefix = f"{model_prepath}_{ckpt}" if ckpt else model_prepath
        files: dict[str, Callable[[], Any]] = {}
        for name, net in self.nets.items():
            files[f"{prefix}_{name}_model.pt"] = net.state_dict
            if name in self.optims:
                files[f"{prefix}_{name}_optim.pt"] = self.optims[name].state_dict
        return files

    def save(self, model_prepath: str, ckpt: str | None = None) -> None:
        """Write the ``model_files`` atomically."""
        for path, state in self.model_files(model_prepath, ckpt).items():
            save_torch_file(path, state())

    def copy_saved(self, model_prepath: str, ckpt: str) -> None:
        """Make the ``ckpt`` model files copies of the latest ones, which must have been saved since the last
        update: ckpt-best at a log checkpoint, without serialising the same weights twice."""
        latest = self.model_files(model_prepath)
        for src, dst in zip(latest, self.model_files(model_prepath, ckpt), strict=True):
            snapshot_file(src, dst)

    def load(self, model_prepath: str, ckpt: str | None = None, load_optim: bool = True) -> None:
        prefix = f"{model_prepath}_{ckpt}" if ckpt else model_prepath
        for name, net in self.nets.items():
            net.load_state_dict(load_torch_file(f"{prefix}_{name}_model.pt", map_location=self.device))
            if load_optim and name in self.optims:
                optim_state = load_torch_file(f"{prefix}_{name}_optim.pt", map_location=self.device)
                self.optims[name].load_state_dict(optim_state)
