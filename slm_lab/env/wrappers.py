"""Batched numpy transforms applied by ``LabEnv`` after raw-return recording.

Order on every step: reward scale -> normalise obs -> clip obs -> normalise reward -> clip reward. Each transform
works on ``(num_envs, ...)`` arrays in one vectorised call; none loops over env copies in Python.

Statistics live in plain ``RunningMeanStd`` objects so that an evaluation env can share the training env's objects
and read them frozen (→D34). ``state_dict`` holds only Python floats and lists, so it pickles and loads anywhere.
"""

import math

import numpy as np

from slm_lab.errors import SpecError

__all__ = ["ObsHistory", "ObsNormalizer", "RewardNormalizer", "RunningMeanStd", "parse_clip_reward"]

EPS = 1e-8


class RunningMeanStd:
    """Running mean and variance over a stream of batches, merged with Chan et al.'s parallel formula.

    For a batch with mean m_b, variance v_b and size n_b merged into (m, v, n), with δ = m_b − m and N = n + n_b:
    m' = m + δ·n_b/N and v' = (v·n + v_b·n_b + δ²·n·n_b/N) / N. ``count`` starts at a tiny epsilon so the first
    batch dominates and no division by zero can happen.
    """

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4) -> None:
        self.shape = tuple(shape)
        self.mean = np.zeros(self.shape, dtype=np.float64)
        self.var = np.ones(self.shape, dtype=np.float64)
        self.count = float(epsilon)

    def update(self, x: np.ndarray) -> None:
        """Merge a batch ``x`` of shape ``(B, *shape)``."""
        n = x.shape[0]
        x = x.astype(np.float64, copy=False)  # mixed-dtype arithmetic is slower than one conversion
        batch_mean = np.add.reduce(x, axis=0) / n
        diff = x - batch_mean
        batch_var = np.add.reduce(diff * diff, axis=0) / n
        self.update_from_moments(batch_mean, batch_var, n)

    def update_from_moments(self, batch_mean: np.ndarray, batch_var: np.ndarray, batch_count: int) -> None:
        delta = batch_mean - self.mean
        total = self.count + batch_count
        w_old, w_new = self.count / total, batch_count / total
        self.mean = self.mean + delta * w_new
        self.var = self.var * w_old + batch_var * w_new + delta * delta * (w_old * w_new)
        self.count = total

    def state_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "var": self.var.tolist(), "count": self.count}

    def load_state_dict(self, d: dict) -> None:
        mean = np.asarray(d["mean"], dtype=np.float64)
        if mean.shape != self.shape:
            raise ValueError(f"normaliser statistics of shape {mean.shape} do not fit shape {self.shape}")
        self.mean = mean
        self.var = np.asarray(d["var"], dtype=np.float64)
        self.count = float(d["count"])


class ObsNormalizer:
    """(obs − mean) / sqrt(var + ε) with running statistics, as float32, optionally clipped to ±``clip``."""

    def __init__(self, shape: tuple[int, ...], clip: float | None = None) -> None:
        self.rms = RunningMeanStd(shape)
        self.clip = None if clip is None else float(clip)
        self.frozen = False

    def update(self, obs: np.ndarray) -> None:
        if not self.frozen:
            self.rms.update(obs)

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        out = ((obs - self.rms.mean) / np.sqrt(self.rms.var + EPS)).astype(np.float32)
        if self.clip is not None:  # minimum/maximum in place: cheaper than np.clip on small arrays
            np.minimum(out, self.clip, out=out)
            np.maximum(out, -self.clip, out=out)
        return out

    def state_dict(self) -> dict:
        return self.rms.state_dict()

    def load_state_dict(self, d: dict) -> None:
        self.rms.load_state_dict(d)


class RewardNormalizer:
    """Scales rewards by the running standard deviation of each copy's discounted return.

    Per copy, G ← γ·G + r; the statistics are updated with the batch of G; the reward is divided by
    sqrt(var(G) + ε) (the mean is not subtracted, so the sign of rewards is kept). G restarts at 0 when an episode
    ends, by termination or truncation.
    """

    def __init__(self, num_envs: int, gamma: float) -> None:
        self.rms = RunningMeanStd(())
        self.gamma = float(gamma)
        self.returns = np.zeros(num_envs, dtype=np.float64)
        self.frozen = False

    def __call__(self, reward: np.ndarray, done: np.ndarray) -> np.ndarray:
        if not self.frozen:
            self.returns *= self.gamma
            self.returns += reward
            self.rms.update(self.returns)
            self.returns *= ~done  # a new episode starts from G = 0
        return reward / math.sqrt(float(self.rms.var) + EPS)

    def reset(self) -> None:
        self.returns[:] = 0.0

    def state_dict(self) -> dict:
        return self.rms.state_dict()

    def load_state_dict(self, d: dict) -> None:
        self.rms.load_state_dict(d)


def parse_clip_reward(value: object) -> tuple[float, float] | None:
    """``None`` -> no clipping; a number v -> (−v, v); ``[lo, hi]`` -> (lo, hi)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise SpecError(f"env.clip_reward: expected a number or [lo, hi], got {value!r}")
    if isinstance(value, int | float):
        v = abs(float(value))
        return (-v, v)
    if isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(x, int | float) for x in value):
        lo, hi = float(value[0]), float(value[1])
        if lo > hi:
            raise SpecError(f"env.clip_reward: lower bound {lo} is above upper bound {hi}")
        return (lo, hi)
    raise SpecError(f"env.clip_reward: expected a number or [lo, hi], got {value!r}")


class ObsHistory:
    """The last ``seq_len`` observations of each env copy, oldest first, zero-padded after a reset (→D16).

    A recurrent net needs a real history; this keeps one per copy as a (num_envs, seq_len, *obs_shape) buffer.
    ``step`` returns the stacked next state (the history ending in each copy's true next observation) and the
    stacked observation the agent acts on next, which restarts from zeros plus the reset observation for the copies
    whose episode ended.
    """

    def __init__(self, num_envs: int, seq_len: int, obs_shape: tuple[int, ...], dtype: np.dtype) -> None:
        if seq_len < 1:
            raise ValueError(f"seq_len must be at least 1, got {seq_len}")
        self.buffer = np.zeros((num_envs, seq_len, *obs_shape), dtype=dtype)

    def reset(self, obs: np.ndarray) -> np.ndarray:
        self.buffer[:] = 0
        self.buffer[:, -1] = obs
        return self.buffer.copy()

    def step(
        self, obs: np.ndarray, next_state: np.ndarray, reset_mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(stacked obs, stacked next state); ``reset_mask`` marks the copies whose ``obs`` starts a new episode."""
        self.buffer[:, :-1] = self.buffer[:, 1:]
        self.buffer[:, -1] = next_state
        stacked_next = self.buffer.copy()
        if not reset_mask.any():
            return stacked_next, stacked_next
        self.buffer[reset_mask] = 0
        self.buffer[reset_mask, -1] = obs[reset_mask]
        return self.buffer.copy(), stacked_next
