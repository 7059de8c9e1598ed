"""The agent: an Algorithm with its Net(s) and Memory, built in one place from the spec."""

import contextlib
import math
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from slm_lab.agent.algorithm import ALGORITHMS, Algorithm
from slm_lab.agent.memory import MEMORIES, Memory
from slm_lab.spec.validation import get_spec_models

__all__ = ["Agent", "build_agent"]


class Agent:
    """Acts on a batch of states and learns from each vector step.

    ``update`` stores the step in memory, trains when the memory is ready (the loss is kept when it is not NaN), and
    steps the algorithm's schedulers. In eval modes (enjoy) it does not learn.

    The experiment layer (session, evaluation, resume, TensorBoard) asks the agent for what it needs: its ``nets``,
    the ``lr`` and ``diagnostics`` of a dataframe row, ``evaluating()``, the net state and the update counts.
    """

    def __init__(self, algorithm: Algorithm, memory: Memory, mode: str) -> None:
        self.algorithm = algorithm
        self.memory = memory
        self.learning = mode not in ("enjoy", "eval")
        self.loss = math.nan
        self.train_seconds = 0.0  # wall seconds spent in finished training updates
        self.train_started: float | None = None  # perf_counter() at the start of the update in progress

    def act(self, state: np.ndarray) -> np.ndarray:
        return self.algorithm.act(state)

    def update(self, state: np.ndarray, action: np.ndarray, step: Any) -> None:
        if not self.learning:
            return
        self.memory.update(state, action, step.reward, step.next_state, step.terminated, step.truncated)
        self.algorithm.on_step(state, action, step)
        if self.memory.ready():
            self.train_started = time.perf_counter()
            loss = self.algorithm.train()
            self.train_seconds += time.perf_counter() - self.train_started
            self.train_started = None
            self.memory.on_train()
            if not math.isnan(loss):
                self.loss = loss
        self.algorithm.update()

    def train_clock(self) -> float:
        """Wall seconds spent training so far, the update in progress included: what the thread tuner compares,
        also from inside a long update (one PPO update is thousands of optimizer steps)."""
        if self.train_started is None:
            return self.train_seconds
        return self.train_seconds + (time.perf_counter() - self.train_started)

    # what the experiment layer reads -------------------------------------------------------------------------
    @property
    def nets(self) -> dict[str, torch.nn.Module]:
        """The algorithm's nets by name (net, critic_net, q1_net, target_net, ...)."""
        return self.algorithm.nets

    @property
    def lr(self) -> float:
        """The current learning rate, the mean over the nets' LR schedulers (the ``lr`` column)."""
        return self.algorithm.lr

    def diagnostics(self) -> dict[str, float]:
        """The algorithm's columns of a dataframe row (grad_norm, its schedules and declared diagnostics)."""
        return self.algorithm.df_extras()

    @property
    def learns(self) -> bool:
        """False for a baseline that never updates (Random)."""
        return self.algorithm.learns

    @property
    def updates(self) -> dict[str, int]:
        """Updates run and skipped (for a non-finite loss) in this process."""
        return self.algorithm.updates

    @contextlib.contextmanager
    def evaluating(self) -> Iterator[None]:
        """Act as in an enjoy/eval run inside the block (explore vars at their end values, SAC's mean action)."""
        with self.algorithm.evaluating():
            yield

    def net_state_dict(self) -> dict[str, Any]:
        """Every net's and optimizer's state, for the resume state."""
        return self.algorithm.net_state_dict()

    def load_net_state_dict(self, state: dict[str, Any]) -> None:
        self.algorithm.load_net_state_dict(state)

    def load_replay_state(self, algorithm_state: dict[str, Any]) -> None:
        """Prepare a saved agent to be replayed (enjoy): the algorithm state of its checkpoint (normalisers, log α)
        without the last update's diagnostics (a replay does not train), and explore vars at their end values
        whatever the saved ones."""
        self.algorithm.load_state_dict({**algorithm_state, "train_stats": {}})
        for scheduler in self.algorithm.var_schedulers.values():
            scheduler.set_eval(True)

    # files --------------------------------------------------------------------------------------------------
    def save(self, model_prepath: str, ckpt: str | None = None) -> None:
        self.algorithm.save(model_prepath, ckpt)

    def load(self, model_prepath: str, ckpt: str | None = None, load_optim: bool = True) -> None:
        """Load the model (and optimizer) files saved under ``model_prepath`` (``ckpt``: e.g. ckpt-best)."""
        self.algorithm.load(model_prepath, ckpt, load_optim)

    def copy_saved(self, model_prepath: str, ckpt: str) -> None:
        """The ``ckpt`` model files as copies of the latest ones, saved since the last update."""
        self.algorithm.copy_saved(model_prepath, ckpt)

    def state_dict(self) -> dict[str, Any]:
        """Algorithm state (schedulers, normalizers) and the last loss; the memory has its own file."""
        return {"algorithm": self.algorithm.state_dict(), "loss": self.loss}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.algorithm.load_state_dict(state["algorithm"])
        self.loss = state["loss"]


def get_device(spec: dict[str, Any]) -> torch.device:
    """CUDA when the net spec allows it (``gpu`` absent/auto/null/true) and it is available; the index follows
    ``(trial·max_session + session + cuda_offset) mod device_count``."""
    gpu = spec["agent"]["net"].get("gpu", "auto")
    if gpu is False or not torch.cuda.is_available():
        return torch.device("cpu")
    meta = spec["meta"]
    session = 0 if meta.get("distributed") == "shared" else max(meta.get("session", 0), 0)
    idx = max(meta.get("trial", 0), 0) * meta["max_session"] + session + int(meta.get("cuda_offset") or 0)
    return torch.device(f"cuda:{idx % torch.cuda.device_count()}")


def build_agent(spec: dict[str, Any], env: Any, mode: str, device: torch.device | None = None) -> Agent:
    """Build memory, then algorithm (nets, optimizers, schedulers), from a valid spec: its agent sections are
    validated once, here, into their typed models (``get_spec_models``), and the components are built from those."""
    device = device if device is not None else get_device(spec)
    models = get_spec_models(spec)
    algo_spec, memory_spec = spec["agent"]["algorithm"], spec["agent"]["memory"]
    algo_cls = ALGORITHMS.get(algo_spec["name"], "agent.algorithm.name")
    memory_cls = MEMORIES.get(memory_spec["name"], "agent.memory.name")
    training_frequency = algo_cls.training_frequency(algo_spec)
    memory = memory_cls.from_spec(
        models.memory,
        env=env,
        algorithm_spec=algo_cls.memory_algorithm_spec(algo_spec, memory_spec),
        training_frequency=training_frequency,
        device=device,
    )
    algorithm = algo_cls(spec=spec, env=env, memory=memory, device=device, mode=mode, cfg=models.algorithm)
    return Agent(algorithm, memory, mode)
