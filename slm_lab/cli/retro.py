"""``slm-retro DIR``: rebuild a run folder's metrics and graphs from its files (D23).

For each trial spec ``{name}_t{t}_spec.json`` in DIR: every session's metrics and graphs are recomputed from
``info/{name}_t{t}_s{s}_session_df_{train,eval}.csv``, then the trial metrics and graphs from those session metrics
(the eval metrics when every session has them, as at the end of a run, else the train metrics). For a search
(``info/{name}_trial_data_dict.json`` exists), the experiment df and graphs are rebuilt too, with each trial's
searched config from that file and its freshly recomputed metrics. Every computation is deterministic (the
bootstrap is seeded), so the metric files come out identical to the run's. Models are never touched. Importable
without torch.
"""

import argparse
import copy
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from loguru import logger

from slm_lab.errors import LabError
from slm_lab.experiment import analysis
from slm_lab.lib.io_util import read_json
from slm_lab.lib.logger import setup_logging

__all__ = ["main", "retro_analyze", "retro_analyze_experiment", "retro_analyze_trial"]

TRIAL_SPEC_RE = re.compile(r"^(?P<name>.+)_t(?P<trial>\d+)_spec\.json$")


def _find_trial_specs(run_dir: Path) -> list[tuple[int, Path]]:
    found = []
    for path in run_dir.iterdir():
        match = TRIAL_SPEC_RE.match(path.name)
        if match and path.is_file():
            found.append((int(match.group("trial")), path))
    return sorted(found)


def _read_spec(path: Path) -> dict[str, Any]:
    try:
        spec = read_json(path)
    except (OSError, json.JSONDecodeError) as e:
        raise LabError(f"cannot read trial spec {path}: {e}") from e
    if not isinstance(spec, dict) or "name" not in spec or "meta" not in spec or "env" not in spec:
        raise LabError(f"not a trial spec (needs name, env and meta): {path}")
    return spec


def _read_session_df(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path).astype(np.float32)
    except (OSError, ValueError) as e:
        raise LabError(f"cannot read session dataframe {path}: {e}") from e


def retro_analyze_trial(
    run_dir: Path, trial: int, spec_path: Path, log_extra: bool | None = None
) -> dict[str, Any]:
    """Re-analyse one trial of ``run_dir`` from its spec and session CSVs. Returns the trial metrics."""
    spec = _read_spec(spec_path)
    meta = spec["meta"]
    meta["predir"] = str(run_dir)  # the folder may have been moved since the run
    meta["trial"] = trial
    meta["session"] = -1
    name = spec["name"]
    csv_re = re.compile(rf"^{re.escape(name)}_t{trial}_s(\d+)_session_df_(train|eval)\.csv$")
    info_dir = run_dir / "info"
    csvs = []
    if info_dir.is_dir():
        for path in info_dir.iterdir():
            match = csv_re.match(path.name)
            if match:
                csvs.append((int(match.group(1)), match.group(2), path))
    if not csvs:
        raise LabError(
            f"no session dataframes info/{name}_t{trial}_s*_session_df_{{train,eval}}.csv in {run_dir}"
        )
    by_mode: dict[str, list[dict[str, Any]]] = {"train": [], "eval": []}
    for session, df_mode, path in sorted(csvs):
        session_spec = copy.deepcopy(spec)
        session_spec["meta"]["session"] = session
        df = _read_session_df(path)
        by_mode[df_mode].append(analysis.analyze_session(session_spec, df, df_mode, log_extra=log_extra))
    sessions = {s for s, _, _ in csvs}
    df_mode = "eval" if len(by_mode["eval"]) == len(sessions) else "train"
    metrics_list = analysis.load_session_metrics(spec, df_mode)
    return analysis.analyze_trial(spec, metrics_list, log_extra=log_extra)


def retro_analyze_experiment(
    run_dir: Path,
    data_dict_path: Path,
    trial_scalars: dict[int, dict[str, Any]],
    log_extra: bool | None = None,
) -> None:
    """Rebuild the experiment df and graphs: each trial's config from ``{name}_trial_data_dict.json`` with the
    metrics just recomputed for that trial (the recorded ones for a trial without session files)."""
    name = data_dict_path.name[: -len("_trial_data_dict.json")]
    try:
        recorded = read_json(data_dict_path)
    except (OSError, json.JSONDecodeError) as e:
        raise LabError(f"cannot read {data_dict_path}: {e}") from e
    entries_ok = isinstance(recorded, dict) and all(
        str(k).isdigit() and isinstance(v, dict) for k, v in recorded.items()
    )
    if not entries_ok:
        raise LabError(
            f"not a trial data dict (a mapping of trial index to config and metrics): {data_dict_path}"
        )
    metric_keys = {*analysis.METRICS_COLS, *analysis.TRIAL_STATS_KEYS}
    trial_data = {}
    for key, data in recorded.items():
        trial = int(key)
        config = {k: v for k, v in data.items() if k not in metric_keys}
        trial_data[trial] = {
            **config,
            **trial_scalars.get(trial, {k: data[k] for k in data if k in metric_keys}),
        }
    spec = {"name": name, "meta": {"predir": str(run_dir), "experiment": 0, "trial": -1, "session": -1}}
    analysis.analyze_experiment(spec, trial_data, log_extra=log_extra)


def retro_analyze(run_dir: str | Path, log_extra: bool | None = None) -> list[dict[str, Any]]:
    """Re-analyse every trial in ``run_dir``, then the experiment when it is a search; prints each
    ``trial_metrics:`` line. Raises ``LabError`` when the folder is missing or holds no trial spec."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise LabError(f"not a folder: {run_dir}")
    trial_specs = _find_trial_specs(run_dir)
    if not trial_specs:
        raise LabError(f"no trial spec {{name}}_t{{t}}_spec.json in {run_dir}")
    results = []
    trial_scalars = {}
    for trial, spec_path in trial_specs:
        metrics = retro_analyze_trial(run_dir, trial, spec_path, log_extra)
        print(analysis.trial_metrics_line(metrics["scalar"]), flush=True)
        results.append(metrics)
        trial_scalars[trial] = metrics["scalar"]
    for data_dict_path in sorted(run_dir.glob("info/*_trial_data_dict.json")):
        retro_analyze_experiment(run_dir, data_dict_path, trial_scalars, log_extra)
    logger.info(f"Retro analysis done: {run_dir}")
    return results


def main(argv: list[str] | None = None) -> int:
    """Console entry point of ``slm-retro DIR``. Returns the exit code: 0, or 1 on a user error (one line)."""
    parser = argparse.ArgumentParser(
        prog="slm-retro", description="Rebuild the metrics and graphs of a run folder from its files."
    )
    parser.add_argument("dir", nargs="?", help="a run folder data/{name}_{ts}")
    parser.add_argument(
        "--log-extra",
        action="store_true",
        default=None,
        help="also draw the strength, efficiency, stability and consistency graphs (default: $LOG_EXTRA)",
    )
    args = parser.parse_args(argv)
    setup_logging()
    if not args.dir:
        print("slm-retro: error: missing DIR, the run folder to analyse", file=sys.stderr)
        return 1
    try:
        retro_analyze(args.dir, args.log_extra)
    except LabError as e:
        print(f"slm-retro: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
