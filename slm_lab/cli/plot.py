"""``slm-lab plot`` and ``slm-lab plot-list``: compare finished runs from their files. Torch-free.

``plot`` reads, for each run folder, the trial metrics (``info/{name}_t{t}_trial_metrics.json``; with several
trials, the one with the highest ``total_reward_ma``) and the trial spec, for its env and algorithm. It overlays the
runs' MA curves (mean ± std across sessions) into ``{out}/{Title}_multi_trial_graph_mean_returns_ma_vs_frames.png``.
With ``--stats`` it also draws performance profiles and the probability of improvement between the runs' labels
(B3), using each session's ``total_reward_ma`` as its score: runs with the same label on different envs are one
algorithm on several tasks (strata). On one env the scores are raw; across envs each score is normalised per env as
``(score − R_rand) / (best score on that env − R_rand)``, so that 0 is random play and 1 the best run compared.
"""

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slm_lab.errors import LabError
from slm_lab.experiment import analysis
from slm_lab.lib import random_baseline, stats, viz_multi
from slm_lab.lib.io_util import read_json

__all__ = ["RunData", "find_run_dir", "list_runs", "load_run", "plot_runs"]

TRIAL_METRICS_RE = re.compile(r"^(?P<name>.+)_t(?P<trial>\d+)_trial_metrics\.json$")


@dataclass(frozen=True)
class RunData:
    """One trial of a run folder, as ``plot`` needs it."""

    folder: Path
    trial: int
    env_name: str
    label: str
    frames: list[float]
    returns_list: list[list[float]]

    @property
    def scores(self) -> np.ndarray:
        """Each session's final score, its ``total_reward_ma`` (NaN for a session with no return)."""
        return np.array([analysis.calc_total_reward_ma(r) for r in self.returns_list], dtype=np.float64)


def find_run_dir(token: str, data_dir: Path) -> Path:
    """A run folder given as a path, a folder name under ``data_dir``, or the unique prefix of one."""
    for candidate in (Path(token), data_dir / token):
        if candidate.is_dir():
            return candidate
    matches = sorted(p for p in data_dir.glob(f"{token}*") if p.is_dir()) if data_dir.is_dir() else []
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise LabError(
            f"-f {token!r} matches several run folders in {data_dir}: {', '.join(m.name for m in matches)}"
        )
    raise LabError(f"-f {token!r}: no such run folder (looked in the current folder and in {data_dir})")


def _trial_metrics_files(run_dir: Path) -> list[tuple[str, int, Path]]:
    info = run_dir / "info"
    found = []
    if info.is_dir():
        for path in info.iterdir():
            match = TRIAL_METRICS_RE.match(path.name)
            if match:
                found.append((match.group("name"), int(match.group("trial")), path))
    return sorted(found, key=lambda f: f[1])


def _read(path: Path) -> Any:
    try:
        return read_json(path)
    except (OSError, ValueError) as e:
        raise LabError(f"cannot read {path}: {e}") from e


def load_run(run_dir: Path) -> RunData:
    """The best trial (highest ``total_reward_ma``) of ``run_dir`` with its env and legend label."""
    files = _trial_metrics_files(run_dir)
    if not files:
        raise LabError(
            f"{run_dir}: no trial metrics info/{{name}}_t{{t}}_trial_metrics.json (try slm-retro {run_dir})"
        )
    candidates = []
    for name, trial, path in files:
        metrics = _read(path)
        if not isinstance(metrics, dict) or "local" not in metrics or "scalar" not in metrics:
            raise LabError(f"{path}: not a trial metrics file (needs scalar and local)")
        ma = metrics["scalar"].get("total_reward_ma")
        candidates.append((-math.inf if ma is None or math.isnan(ma) else ma, -trial, name, trial, metrics))
    _, _, name, trial, metrics = max(candidates, key=lambda c: (c[0], c[1]))
    spec_path = run_dir / f"{name}_t{trial}_spec.json"
    spec = _read(spec_path) if spec_path.is_file() else {}
    agent = spec.get("agent", {})
    label = viz_multi.algorithm_label(
        str(agent.get("algorithm", {}).get("name", name)), str(agent.get("memory", {}).get("name", ""))
    )
    local = metrics["local"]
    return RunData(
        run_dir,
        trial,
        str(spec.get("env", {}).get("name", "unknown env")),
        label,
        local["frames"],
        local["mean_returns"],
    )


def _safe_name(title: str) -> str:
    return re.sub(r"[^\w.+-]+", "_", title).strip("_") or "plot"


def _score_strata(runs: Sequence[RunData], labels: Sequence[str]) -> tuple[dict[str, list[np.ndarray]], bool]:
    """Per label, one score array per env (envs in first-seen order), normalised per env when there are several."""
    envs = list(dict.fromkeys(r.env_name for r in runs))
    normalise = len(envs) > 1
    by_env = {}
    for env in envs:
        env_scores = np.concatenate([r.scores for r in runs if r.env_name == env])
        finite = env_scores[np.isfinite(env_scores)]
        r_rand = random_baseline.get_random_baseline(env) or 0.0
        best = float(finite.max()) if finite.size else math.nan
        by_env[env] = (r_rand, best - r_rand if best - r_rand > 0 else 1.0)
    strata: dict[str, list[np.ndarray]] = {}
    for label in labels:
        per_env = []
        for env in envs:
            scores = [r.scores for r in runs if r.label == label and r.env_name == env]
            x = np.concatenate(scores) if scores else np.zeros(0)
            if normalise:
                r_rand, span = by_env[env]
                x = (x - r_rand) / span
            per_env.append(x)
        strata[label] = per_env
    return strata, normalise


def _stats_report(
    strata: dict[str, list[np.ndarray]], poi_rows: list[dict[str, Any]], unit: str
) -> list[str]:
    lines = [f"IQM of session scores ({unit}), stratified-bootstrap 95% CI:"]
    for label, tasks in strata.items():
        scores = np.concatenate(tasks) if tasks else np.zeros(0)
        low, high = stats.bootstrap_ci(tasks)
        lines.append(
            f"  {label}: {stats.iqm(scores):.4g} [{low:.4g}, {high:.4g}] over {np.isfinite(scores).sum()} runs"
        )
    if poi_rows:
        lines.append("Probability of improvement P(X > Y), 95% CI:")
        lines += [f"  {r['x']} > {r['y']}: {r['p']:.3f} [{r['low']:.3f}, {r['high']:.3f}]" for r in poi_rows]
    return lines


def plot_runs(
    tokens: Sequence[str],
    data_dir: Path,
    out_dir: Path,
    title: str | None = None,
    labels: Sequence[str] | None = None,
    legend: bool = True,
    with_stats: bool = False,
) -> tuple[list[str], list[str]]:
    """Draw the comparison graphs of the runs named by ``tokens``. Returns (paths written, report lines)."""
    if not tokens:
        raise LabError("-f needs at least one run folder, e.g. -f ppo_cartpole_2024_01_01_000000")
    if labels is not None and len(labels) != len(tokens):
        raise LabError(
            f"-l gives {len(labels)} labels for {len(tokens)} folders; give one label per -f folder"
        )
    runs = [load_run(find_run_dir(t, data_dir)) for t in tokens]
    if labels is not None:
        runs = [
            RunData(r.folder, r.trial, r.env_name, lab, r.frames, r.returns_list)
            for r, lab in zip(runs, labels, strict=True)
        ]
    order = viz_multi.sort_labels([r.label for r in runs])
    others = [lab for lab in order if lab not in viz_multi.ALGORITHM_COLORS]
    runs.sort(key=lambda r: order.index(r.label))
    envs = list(dict.fromkeys(r.env_name for r in runs))
    title = title or " vs ".join(envs)
    prefix = str(out_dir / _safe_name(title))
    curves = [
        viz_multi.RunCurves(r.label, r.frames, r.returns_list, viz_multi.label_color(r.label, others))
        for r in runs
    ]
    written = viz_multi.plot_multi_trial(prefix, curves, title, legend, kinds=("mean_returns_ma",))
    report = [
        f"{r.label}: {r.folder} t{r.trial} ({r.env_name}, {len(r.returns_list)} sessions)" for r in runs
    ]
    if with_stats:
        strata, normalised = _score_strata(runs, order)
        unit = "normalized score" if normalised else "total_reward_ma"
        written += viz_multi.plot_performance_profiles(
            f"{prefix}_performance_profile.png", strata, f"{title}: performance profiles", f"{unit} τ"
        )
        poi_paths, poi_rows = viz_multi.plot_probability_of_improvement(
            f"{prefix}_probability_of_improvement.png", strata, f"{title}: probability of improvement"
        )
        written += poi_paths
        report += _stats_report(strata, poi_rows, unit)
    return written, report


def list_runs(data_dir: Path) -> list[str]:
    """One line per run folder of ``data_dir``: ``[x]`` with trial metrics (and the best ``total_reward_ma``),
    ``[ ]`` without."""
    if not data_dir.is_dir():
        raise LabError(f"no data folder {data_dir} (set -d or SLM_DATA_DIR)")
    lines = []
    for folder in sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        files = _trial_metrics_files(folder)
        if not files:
            lines.append(f"[ ] {folder.name}")
            continue
        mas = []
        for _, _, path in files:
            try:
                mas.append(float(read_json(path)["scalar"]["total_reward_ma"]))
            except (OSError, ValueError, KeyError, TypeError):
                continue
        finite = [m for m in mas if not math.isnan(m)]
        best = f"{max(finite):.2f}" if finite else "nan"
        lines.append(f"[x] {folder.name}  trials:{len(files)}  best total_reward_ma:{best}")
    return lines
