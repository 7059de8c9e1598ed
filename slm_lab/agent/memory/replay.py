"""Off-policy replay memories: a circular storage plus a sampler (uniform, or prioritized with a sum tree)."""

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from slm_lab.agent.memory.base import MEMORIES, Memory, ReplayBatch, transition_layout
from slm_lab.agent.memory.sampler import PrioritizedSampler, Sampler, UniformSampler
from slm_lab.agent.memory.storage import CircularStorage
from slm_lab.spec.schema import MemorySpec, PrioritizedReplaySpec, ReplaySpec
from slm_lab.spec.schema_base import typed_section

__all__ = ["PrioritizedReplay", "Replay"]


def _storage_from_spec(cfg: ReplaySpec, env: Any, device: torch.device) -> CircularStorage:
    """Observations in their native dtype, float64 as float32, unless ``obs_dtype`` says otherwise (→D5)."""
    return CircularStorage(
        max_size=int(cfg.max_size), **transition_layout(env, cfg.obs_dtype)._asdict(), device=device
    )


@MEMORIES.register("Replay")
class Replay(Memory):
    """Experience replay (Lin 1992; Mnih et al. 2015): a circular buffer of the newest ``max_size`` transitions.

    1. ``update`` writes each env copy's transition of a vector step to its own slot (seen count = frames).
    2. ``ready()`` is true once training has started (seen > ``training_start_step``) and ``training_frequency``
       transitions have been stored since the last train. The trigger counts transitions, not buffer slots, so its
       cadence does not shift when the buffer wraps (→D15); the agent trains at most once per vector step.
    3. ``sample()`` picks ``batch_size`` slots through the sampler (uniform with replacement here). With ``use_cer``
       (combined experience replay, Zhang & Sutton 2017, https://arxiv.org/abs/1712.01275) the last k slots of the
       batch are replaced by every transition added since the previous sample, k = min(new, batch_size, size).

    Prioritized replay is the same memory with a ``PrioritizedSampler``; algorithms check ``updates_priorities``.

    Spec example::

        {"name": "Replay", "batch_size": 32, "max_size": 10000, "use_cer": false}
    """

    def __init__(
        self,
        *,
        storage: CircularStorage,
        sampler: Sampler,
        batch_size: int,
        training_frequency: int,
        training_start_step: int,
        use_cer: bool = False,
    ) -> None:
        self.storage = storage
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.training_frequency = int(training_frequency)
        self.training_start_step = int(training_start_step)
        self.use_cer = bool(use_cer)
        self.updates_priorities = sampler.updates_priorities
        self.device = storage.device
        self.stored_since_train = 0  # transitions stored since the last train (the D15 trigger)
        self.seen_at_sample = 0  # storage.seen at the previous sample (CER)
        self.cer_mask: np.ndarray | None = None  # batch positions of the last sample that CER filled

    @classmethod
    def _config(cls, memory_spec: Mapping[str, Any] | MemorySpec) -> ReplaySpec:
        return typed_section(memory_spec, ReplaySpec, "agent.memory")

    @classmethod
    def _sampler(cls, cfg: ReplaySpec, env: Any) -> Sampler:
        return UniformSampler()

    @classmethod
    def from_spec(
        cls,
        memory_spec: Mapping[str, Any] | MemorySpec,
        *,
        env: Any,
        algorithm_spec: dict[str, Any],
        training_frequency: int,
        device: torch.device,
    ) -> "Replay":
        cfg = cls._config(memory_spec)
        start = algorithm_spec.get("training_start_step")
        return cls(
            storage=_storage_from_spec(cfg, env, device),
            sampler=cls._sampler(cfg, env),
            batch_size=cfg.batch_size,
            training_frequency=training_frequency,
            training_start_step=cfg.batch_size if start is None else int(start),
            use_cer=cfg.use_cer,
        )

    @property
    def size(self) -> int:
        """Transitions currently stored."""
        return self.storage.size

    @property
    def seen(self) -> int:
        """Transitions ever stored (equals env frames)."""
        return self.storage.seen

    def update(
        self,
        state: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        next_state: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
    ) -> None:
        slots = self.storage.add_batch(state, action, reward, next_state, terminated, truncated)
        self.sampler.on_add(slots)
        self.stored_since_train += len(reward)

    def ready(self) -> bool:
        return (
            self.storage.seen > self.training_start_step
            and self.stored_since_train >= self.training_frequency
        )

    def on_train(self) -> None:
        self.stored_since_train = 0

    def sample(self) -> ReplayBatch:
        """``batch_size`` transitions as (B, ...) tensors, in storage dtypes (uint8 images stay uint8).

        ``weights`` are None unless the sampler is prioritized; CER-inserted positions then get the weight of their
        own priority, as if drawn.
        """
        storage = self.storage
        if storage.size == 0:
            raise RuntimeError(f"{type(self).__name__}.sample(): nothing stored yet (check ready() first)")
        indices = self.sampler.sample(storage.size, self.batch_size)
        self.cer_mask = None
        if self.use_cer:
            k = min(storage.seen - self.seen_at_sample, self.batch_size, storage.size)
            if k > 0:
                indices[-k:] = storage.newest(k)
                self.cer_mask = np.zeros(len(indices), dtype=np.bool_)
                self.cer_mask[-k:] = True
        self.seen_at_sample = storage.seen
        batch = storage.get(indices)
        weights = self.sampler.weights(indices, storage.size)
        if weights is not None:
            batch = batch._replace(weights=torch.from_numpy(weights).to(self.device))
        return batch

    def update_priorities(self, indices: Any, td_errors: torch.Tensor) -> None:
        """New priorities (|δ| + ε)^α for the latest sample's ``indices`` (in batch order), skipping CER-inserted
        positions: those were not drawn by priority, and the next proportional draws will see them anyway."""
        if not self.updates_priorities:
            raise NotImplementedError(f"{type(self).__name__} has no priorities")
        indices = np.asarray(indices, dtype=np.int64)
        errors = td_errors.detach().reshape(-1).to("cpu", torch.float64).numpy()
        if self.cer_mask is not None and len(self.cer_mask) == len(indices):
            keep = ~self.cer_mask
            indices, errors = indices[keep], errors[keep]
        self.sampler.update(indices, errors)

    def state_dict(self) -> dict[str, Any]:
        """Storage, sampler (sum tree) and counters; loadable with ``torch.load(weights_only=True)``."""
        return {
            "storage": self.storage.state_dict(),
            "sampler": self.sampler.state_dict(),
            "stored_since_train": self.stored_since_train,
            "seen_at_sample": self.seen_at_sample,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.storage.load_state_dict(state["storage"])
        self.sampler.load_state_dict(state["sampler"])
        self.stored_since_train = int(state["stored_since_train"])
        self.seen_at_sample = int(state["seen_at_sample"])
        self.cer_mask = None


@MEMORIES.register("PrioritizedReplay")
class PrioritizedReplay(Replay):
    """Proportional prioritized experience replay (Schaul et al. 2016, https://arxiv.org/abs/1511.05952): ``Replay``
    with a ``PrioritizedSampler`` (sum tree) in place of uniform sampling, and importance-sampling weights (→D31).

    The algorithm weights each sample's loss by ``batch.weights`` and passes |δ| back through
    ``update_priorities(batch.indices, td_errors)``; β anneals from ``beta`` to ``beta_end`` over ``max_frame``.

    Spec example::

        {"name": "PrioritizedReplay", "alpha": 0.6, "epsilon": 0.0001, "batch_size": 32, "max_size": 10000,
         "use_cer": false, "beta": 0.4, "beta_end": 1.0}
    """

    updates_priorities = True

    @classmethod
    def _config(cls, memory_spec: Mapping[str, Any] | MemorySpec) -> PrioritizedReplaySpec:
        return typed_section(memory_spec, PrioritizedReplaySpec, "agent.memory")

    @classmethod
    def _sampler(cls, cfg: ReplaySpec, env: Any) -> Sampler:
        assert isinstance(cfg, PrioritizedReplaySpec)
        return PrioritizedSampler(
            capacity=int(cfg.max_size),
            alpha=cfg.alpha,
            epsilon=cfg.epsilon,
            beta=cfg.beta,
            beta_end=cfg.beta_end,
            max_frame=env.max_frame,
            clock=env.clock,
        )
