"""MetricsTracker: one dataframe row per checkpoint."""

import math
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["BASE_COLUMNS", "MA_WINDOW", "MetricsTracker"]

BASE_COLUMNS = (
    "total_reward",
    "total_reward_ma",
    "loss",
    "fps",
    "frame",
    "wall_t",
    "t",
    "epi",
    "opt_step",
    "lr",
)
MA_WINDOW = 100


class MetricsTracker:
    """Collects the session dataframe rows and the best moving average so far.

    Rows are kept as a list and turned into a float32 DataFrame on demand; a row whose frame duplicates an earlier row
    is dropped. ``total_reward_ma`` is the NaN-skipping mean of the last ≤100 ``total_reward`` values, this row
    included (D39).
    """

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []
        self.best_total_reward_ma = -math.inf

    def record(
        self,
        env: Any,
        loss: float,
        lr: float,
        extras: dict[str, float],
        total_reward: float | None = None,
    ) -> dict[str, float] | None:
        """Append a row for the env's current clock; returns it, or None when this frame was already recorded.
        ``total_reward`` defaults to the env's (an evaluation passes its own score with the training env)."""
        clock = env.clock
        if self.rows and self.rows[-1]["frame"] == clock.frame:
            return None
        total_reward = float(env.total_reward if total_reward is None else total_reward)
        recent = [r["total_reward"] for r in self.rows[-(MA_WINDOW - 1) :]] + [total_reward]
        finite = [x for x in recent if not math.isnan(x)]
        wall_t = int(clock.wall_t)
        row = {
            "total_reward": total_reward,
            "total_reward_ma": float(np.mean(finite)) if finite else math.nan,
            "loss": loss,
            "fps": clock.frame / wall_t if wall_t > 0 else 0.0,
            "frame": clock.frame,
            "wall_t": wall_t,
            "t": clock.t,
            "epi": clock.epi,
            "opt_step": clock.opt_step,
            "lr": lr,
            **extras,
        }
        self.rows.append(row)
        return row

    def has_frame(self, frame: int) -> bool:
        """Whether the last row is at ``frame``."""
        return bool(self.rows) and self.rows[-1]["frame"] == frame

    def is_best(self, row: dict[str, float]) -> bool:
        """Whether this row's MA is ≥ the best so far (updates the best); NaN is never best."""
        ma = row["total_reward_ma"]
        if math.isnan(ma) or ma < self.best_total_reward_ma:
            return False
        self.best_total_reward_ma = ma
        return True

    @property
    def df(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows).astype("float32")

    def state_dict(self) -> dict[str, Any]:
        return {"rows": [dict(r) for r in self.rows], "best_total_reward_ma": self.best_total_reward_ma}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows = [dict(r) for r in state["rows"]]
        self.best_total_reward_ma = state["best_total_reward_ma"]
