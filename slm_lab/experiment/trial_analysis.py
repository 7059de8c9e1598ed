"""The trial analysis, and the one object through which the trial's files are written.

A trial's metrics files and graphs (``analysis.analyze_trial``) are written only by a ``TrialAnalysis``. The
``Trial`` writes them once every session is done, from the sessions' metrics (``write``). While the sessions run,
session 0 of a learning run rewrites them from the session files on disk whenever its own graphs are due
(``refresh``, at most every ``GRAPH_INTERVAL`` seconds), so that a trial stopped early still has them.
"""

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from slm_lab.experiment import analysis
from slm_lab.lib.paths import prepath

__all__ = ["TrialAnalysis", "trial_view"]


def trial_view(spec: dict[str, Any]) -> dict[str, Any]:
    """A copy of a session spec with the trial-level prepaths, for trial analysis from inside a session."""
    trial_spec = copy.deepcopy(spec)
    meta = trial_spec["meta"]
    meta["session"] = -1
    meta["prepath"] = prepath(trial_spec, "trial")
    for sub in ("info", "graph", "log", "model"):
        meta[f"{sub}_prepath"] = prepath(trial_spec, "trial", sub)
    return trial_spec


class TrialAnalysis:
    """Writes the trial files of a trial-level spec (a session builds one with ``for_session``)."""

    def __init__(self, trial_spec: dict[str, Any]) -> None:
        self.spec = trial_spec

    @classmethod
    def for_session(cls, spec: dict[str, Any]) -> "TrialAnalysis":
        """The trial analysis of the trial a session spec belongs to."""
        return cls(trial_view(spec))

    def write(self, session_metrics: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
        """The trial metrics of the sessions' ``{scalar, local}`` metrics (ordered by session), written with
        graphs; returns them."""
        return analysis.analyze_trial(self.spec, session_metrics, plot=True)

    def refresh(self, df_mode: str) -> None:
        """Rewrite the trial files from the ``df_mode`` session metrics files its sessions have written so far
        (none yet: nothing is written)."""
        session_metrics = analysis.load_session_metrics(self.spec, df_mode)
        if session_metrics:
            self.write(session_metrics)
