"""Rigorous evaluation (→D12): the agent's evaluation policy scored in an env of its own.

With ``meta.rigorous_eval`` a learning session builds a second env that normalises with the training env's
statistics but never updates them (D34). At each evaluation checkpoint the session asks ``Evaluation.evaluate`` for a
score, the mean raw return of the episodes finished in that evaluation alone, and records it as a row of the eval
dataframe (``Evaluation.tracker``); ckpt-best then follows the eval MA instead of the training one.
"""

import math
from typing import Any

import numpy as np
from loguru import logger

from slm_lab.agent import Agent
from slm_lab.env import LabEnv, make_env
from slm_lab.experiment.metrics import MetricsTracker

__all__ = ["EVAL_SEED_OFFSET", "EVAL_STEP_CAP", "Evaluation"]

# The eval env of a rigorous evaluation is reset with the session seed + this + the frame, so each evaluation has
# its own reproducible episodes, apart from the training env's
EVAL_SEED_OFFSET = 10_000_000
# An evaluation stops after this many times the episode step limit (1000 without one) even if a copy never finished
EVAL_STEP_CAP = 10


class Evaluation:
    """The eval env of a session, frozen to the training env's normaliser statistics, and the eval rows."""

    def __init__(self, spec: dict[str, Any], train_env: LabEnv, agent: Agent, seed: int, index: int) -> None:
        self.train_env = train_env
        self.agent = agent
        self.seed = seed
        self.index = index  # the session's, for the log lines
        self.frequency = train_env.eval_frequency  # frames between two evaluations
        self.env = make_env(spec)
        self.env.freeze_normalizers(source=train_env)
        self.tracker = MetricsTracker()

    def evaluate(self) -> float:
        """Run the agent with its evaluation policy in the eval env, reset with a seed of its own for this frame,
        until every copy has finished an episode. Returns their mean raw return (NaN if none finished within
        the step cap)."""
        env, agent = self.env, self.agent
        state = env.reset(seed=self.seed + EVAL_SEED_OFFSET + self.train_env.clock.frame)
        start = env.episode_counts.copy()
        returns: list[float] = []
        cap = EVAL_STEP_CAP * (env.max_t or 1000)
        with agent.evaluating():
            for _ in range(cap):
                epi = env.clock.epi
                step = env.step(agent.act(state))
                state = step.obs
                if env.clock.epi > epi:
                    returns.extend(list(env.returns)[-(env.clock.epi - epi) :])
                    if (env.episode_counts > start).all():
                        break
            else:
                logger.warning(
                    f"Session {self.index}: evaluation stopped after {cap} steps with "
                    f"{int((env.episode_counts > start).sum())} of {env.num_envs} copies done"
                )
        return float(np.mean(returns)) if returns else math.nan

    def close(self) -> None:
        self.env.close()
