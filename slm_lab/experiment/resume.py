"""What a session saves to continue after a stop (→D10, B4), and the state that goes with ckpt-best.

``checkpoint.py`` writes and reads the two resume files as one consistent pair; this module decides what goes in
them and puts it back: nets, optimizers, schedulers, memory, normaliser statistics, RNG states, clock, dataframe rows
and, where the env can capture them, the episodes in progress with the observation the agent acts on next.
"""

import os
import time
from typing import Any

import numpy as np
import torch
from loguru import logger

from slm_lab.agent import Agent
from slm_lab.env import LabEnv
from slm_lab.env.snapshot import SnapshotError
from slm_lab.errors import CheckpointError, LabError
from slm_lab.experiment.checkpoint import has_resume_state, read_resume_state, write_resume_state
from slm_lab.experiment.metrics import MetricsTracker
from slm_lab.lib.io_util import save_torch_file
from slm_lab.lib.seed import get_rng_state, set_rng_state

__all__ = ["STATE_INTERVAL", "ResumeState", "state_interval"]

# The full state (memory included, which can be large) is written at a checkpoint at most this often (wall
# seconds), and always at the end of the session and when a signal stops it (→D10).
STATE_INTERVAL = 600.0


def state_interval() -> float:
    """Seconds between two writes of the full state at checkpoints: ``SLM_STATE_INTERVAL``, default 600 (→D10).
    0 writes it at every checkpoint."""
    value = os.environ.get("SLM_STATE_INTERVAL")
    try:
        return STATE_INTERVAL if value in (None, "") else max(0.0, float(value))
    except ValueError:
        raise LabError(f"SLM_STATE_INTERVAL must be a number of seconds, got {value!r}") from None


class ResumeState:
    """The saved state of one session: ``save`` writes the full state (``_state.pt`` and ``_memory.pt``),
    ``restore`` loads it into the same parts of a new session, ``save_best`` writes the smaller state kept beside
    the ckpt-best model files. ``due`` says when ``state_interval()`` seconds have passed since the last full write.
    """

    def __init__(
        self,
        env: LabEnv,
        agent: Agent,
        tracker: MetricsTracker,
        eval_tracker: MetricsTracker | None,
        mode: str,
        model_prepath: str,
        index: int,
    ) -> None:
        self.env = env
        self.agent = agent
        self.tracker = tracker
        self.eval_tracker = eval_tracker
        self.mode = mode
        self.model_prepath = model_prepath
        self.index = index  # the session's, for the log lines
        self.interval = state_interval()
        self.last_write = time.monotonic()
        self.episodes_saved = True  # False once the env turned out not to support episode snapshots

    def exists(self) -> bool:
        """Whether an earlier run of this session left a full state to continue from."""
        return has_resume_state(self.model_prepath)

    def due(self) -> bool:
        """Whether the next checkpoint writes the full state: ``interval`` has passed since the last write."""
        return time.monotonic() - self.last_write >= self.interval

    def state_dict(self) -> dict[str, Any]:
        """The session state apart from net/optimizer weights, the memory and the episodes in progress: what
        ``ckpt-best`` keeps beside its model files (normaliser statistics, schedulers, clock, rows, RNG)."""
        return {
            "env": self.env.state_dict(),
            "agent": self.agent.state_dict(),
            "tracker": self.tracker.state_dict(),
            "eval_tracker": None if self.eval_tracker is None else self.eval_tracker.state_dict(),
            "rng": get_rng_state(),
        }

    def save_best(self) -> None:
        """Write ``{model_prepath}_ckpt-best_state.pt`` (atomically), the state that goes with ckpt-best."""
        save_torch_file(f"{self.model_prepath}_ckpt-best_state.pt", self.state_dict())

    def episode_state(self) -> torch.Tensor | None:
        """The env's episodes in progress as a byte tensor; None (with a warning, once) when the env cannot
        capture them, so that a resume starts new episodes."""
        if not self.episodes_saved:
            return None
        try:
            blob = self.env.episode_state()
        except SnapshotError as e:
            self.episodes_saved = False
            logger.warning(
                f"Session {self.index}: the episodes in progress of {self.env.name} cannot be saved ({e}); "
                "a resumed session starts new episodes, so it is not an exact continuation"
            )
            return None
        return torch.frombuffer(bytearray(blob), dtype=torch.uint8)

    def save(self, obs: np.ndarray | None) -> None:
        """Write the full state at the current step; ``obs`` is the observation the agent acts on next."""
        episodes = self.episode_state()
        saved_obs = None if episodes is None or obs is None else torch.from_numpy(np.array(obs))
        state = {
            **self.state_dict(),
            "mode": self.mode,
            "nets": self.agent.net_state_dict(),
            "episodes": episodes,
            "obs": saved_obs,
        }
        write_resume_state(self.model_prepath, state, self.agent.memory.state_dict())
        self.last_write = time.monotonic()

    def restore(self) -> np.ndarray | None:
        """Load the full state written by ``save`` (→D10). Returns the observation of the restored episodes in
        progress, or None when the env could not save them (the session then starts new episodes)."""
        state, memory = read_resume_state(self.model_prepath)
        path = f"{self.model_prepath}_state.pt"
        obs = None
        try:
            self.agent.load_net_state_dict(state["nets"])
            self.agent.memory.load_state_dict(memory)
            self.agent.load_state_dict(state["agent"])
            self.env.load_state_dict(state["env"])
            self.tracker.load_state_dict(state["tracker"])
            if self.eval_tracker is not None and state.get("eval_tracker") is not None:
                self.eval_tracker.load_state_dict(state["eval_tracker"])
            if state["episodes"] is not None:
                self.env.load_episode_state(state["episodes"].numpy().tobytes())
                obs = state["obs"].numpy()
        except (KeyError, RuntimeError, ValueError, SnapshotError) as e:
            raise CheckpointError(f"{path} does not fit this spec: {type(e).__name__}: {e}") from None
        set_rng_state(state["rng"])
        clock = self.env.clock
        logger.info(
            f"Session {self.index}: resumed from {path} at frame {clock.frame} (epi {clock.epi}, "
            f"opt_step {clock.opt_step}, wall_t {int(clock.wall_t)})"
            + ("" if obs is not None else "; the env starts new episodes")
        )
        return obs
