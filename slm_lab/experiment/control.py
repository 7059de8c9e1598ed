"""Session and Trial: the RL loop, and its repetition over seeds.

The code lives in modules of one job each; this module keeps the names other code imports from here:

- ``session.py``: ``Session``, the loop, its checkpoints and files;
- ``evaluation.py``: rigorous evaluation (→D12) in an env of its own;
- ``resume.py``: the state a session saves and resumes from (→D10), written by ``checkpoint.py``;
- ``trial.py``: ``Trial``, its pool of session processes and the typed messages they send it;
- ``trial_analysis.py``: ``TrialAnalysis``, the one writer of a trial's files;
- ``signals.py``: signal handling and a spawned session's watch on its parent.
"""

from slm_lab.experiment.session import GRAPH_INTERVAL, Session, SessionReporter
from slm_lab.experiment.trial import Trial, TrialReporter, max_parallel_sessions

__all__ = [
    "GRAPH_INTERVAL",
    "Session",
    "SessionReporter",
    "Trial",
    "TrialReporter",
    "max_parallel_sessions",
]
