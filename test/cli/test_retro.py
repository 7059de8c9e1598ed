"""``slm-retro DIR`` rebuilds the metrics of a run folder from its spec and session CSVs (D23)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from slm_lab.cli import retro
from slm_lab.experiment import analysis
from slm_lab.lib import random_baseline
from slm_lab.lib.io_util import write_json


@pytest.fixture(autouse=True)
def env(monkeypatch):
    monkeypatch.setattr(random_baseline, "get_random_baseline", lambda env_name, compute_missing=False: 20.0)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("PY_ENV", raising=False)


def session_df(seed: int, rows: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = np.arange(1, rows + 1) * 1000.0
    returns = np.cumsum(rng.uniform(-3, 10, rows)) + 20.0
    returns[0] = np.nan
    return pd.DataFrame(
        {
            "total_reward": returns,
            "total_reward_ma": pd.Series(returns).rolling(100, min_periods=1).mean(),
            "loss": rng.uniform(0, 1, rows) / 3,
            "fps": frames / np.arange(1, rows + 1),
            "frame": frames,
            "wall_t": np.arange(1, rows + 1, dtype=float),
            "t": frames,
            "epi": np.arange(rows, dtype=float),
            "opt_step": np.maximum(frames / 7 - 500, 0),
            "lr": np.full(rows, 3e-4),
            "entropy": rng.uniform(0.1, 0.7, rows),
        }
    )


def make_run(root: Path, sessions: int = 2) -> Path:
    run_dir = root / "demo_2024_01_01_000000"
    for sub in ("info", "graph", "log", "model"):
        (run_dir / sub).mkdir(parents=True)
    meta = {"predir": str(run_dir), "trial": 0, "session": -1, "max_session": sessions}
    spec = {"name": "demo", "env": {"name": "CartPole-v1"}, "meta": meta}
    write_json(run_dir / "demo_t0_spec.json", spec)
    metrics_list = []
    for s in range(sessions):
        session_spec = {**spec, "meta": {**meta, "session": s}}
        df = session_df(s)
        analysis.analyze_session(session_spec, df.iloc[:-1], "train", plot=False)  # a mid-run checkpoint
        analysis.analyze_session(session_spec, df, "train", plot=False)
        metrics_list.append(analysis.analyze_session(session_spec, df, "eval", plot=False))
    analysis.analyze_trial(spec, metrics_list, plot=False)
    return run_dir


def snapshot(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in run_dir.rglob("*.json")}


def test_retro_reproduces_metrics_exactly(tmp_path, capsys):
    run_dir = make_run(tmp_path)
    before = snapshot(run_dir)
    for name in before:
        if "metrics" in name:
            (run_dir / name).unlink()
    assert retro.main([str(run_dir)]) == 0
    assert snapshot(run_dir) == before
    out = [ln for ln in capsys.readouterr().out.splitlines() if "trial_metrics:" in ln]
    trial = analysis.load_session_metrics(
        {"name": "demo", "meta": {"predir": str(run_dir), "trial": 0}}, "eval"
    )
    assert len(trial) == 2
    expected = analysis.trial_metrics_line(analysis.calc_trial_metrics(trial)["scalar"])
    assert out == [expected]
    assert out[0].startswith("trial_metrics: frame:1.20e+04 | total_reward_ma:")
    pngs = sorted(p.name for p in run_dir.rglob("*.png"))
    assert "demo_t0_s1_session_graph_eval_entropy_vs_frame.png" in pngs
    assert pngs.count("demo_t0_trial_graph_mean_returns_ma_vs_frames.png") == 2  # graph/ and the run folder


def test_retro_uses_train_metrics_without_eval_files(tmp_path, capsys):
    run_dir = make_run(tmp_path)
    for path in run_dir.glob("info/*_eval.*"):
        path.unlink()
    assert retro.main([str(run_dir)]) == 0
    assert not list(run_dir.glob("info/*_eval.*"))
    assert capsys.readouterr().out.startswith("trial_metrics: frame:1.20e+04")


@pytest.mark.parametrize("case", ["missing", "file", "no_spec", "bad_spec", "no_arg", "bad_data_dict"])
def test_retro_errors_one_line_exit_1(tmp_path, capsys, case):
    argv = {
        "missing": [str(tmp_path / "nope")],
        "file": [str(tmp_path / "f.txt")],
        "no_spec": [str(tmp_path)],
        "bad_spec": [str(tmp_path)],
        "no_arg": [],
        "bad_data_dict": [str(tmp_path / "demo_2024_01_01_000000")],
    }[case]
    (tmp_path / "f.txt").write_text("x")
    if case == "bad_spec":
        (tmp_path / "demo_t0_spec.json").write_text("{not json")
    if case == "bad_data_dict":
        write_json(make_run(tmp_path) / "info/demo_trial_data_dict.json", {"zero": [1, 2]})
    assert retro.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("slm-retro: error: ")
    assert "Traceback" not in err[0]


def test_fresh_process_without_torch_or_display(tmp_path):
    """retro and the analysis import without torch, and a fresh interpreter with no DISPLAY and no matplotlib
    backend configured renders a PNG (D33)."""
    path = tmp_path / "fresh.png"
    code = (
        "import sys; import slm_lab.cli.retro; from slm_lab.lib import viz; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        f"ok = viz.render_line_graph({str(path)!r}, [1, 2, 3], {{'a': [3, 1, 2]}}, title='t', x_title='x', y_title='y'); "
        "sys.exit(0 if ok else 1)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "MPLBACKEND", "PY_ENV")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_retro_rebuilds_experiment_with_fresh_metrics(tmp_path, capsys, check_graph):
    """A search folder: the experiment df and graphs come back, each trial with its config from the trial data dict
    and the metrics recomputed from its CSVs (a stale recorded value is replaced)."""
    run_dir = make_run(tmp_path)
    fresh = json.loads((run_dir / "info/demo_t0_trial_metrics_scalar.json").read_text())
    stale = {**fresh, "strength": -1.0}
    write_json(run_dir / "info/demo_trial_data_dict.json", {"0": {"agent.algorithm.gamma": 0.99, **stale}})
    assert retro.main([str(run_dir)]) == 0
    data = json.loads((run_dir / "info/demo_trial_data_dict.json").read_text())
    assert data["0"]["strength"] == fresh["strength"] and data["0"]["agent.algorithm.gamma"] == 0.99
    df = pd.read_csv(run_dir / "demo_experiment_df.csv")
    assert (
        list(df.columns)[:2] == ["trial", "agent.algorithm.gamma"] and df["strength"][0] == fresh["strength"]
    )
    for name in ("demo_experiment_graph", "demo_multi_trial_graph_mean_returns_ma_vs_frames"):
        check_graph(run_dir / f"{name}.png")
        check_graph(run_dir / f"graph/{name}.html")


def test_retro_log_extra_flag(tmp_path, check_graph):
    run_dir = make_run(tmp_path)
    assert retro.main([str(run_dir), "--log-extra"]) == 0
    for name in (
        "demo_t0_s0_session_graph_eval_strengths_vs_frames",
        "demo_t0_trial_graph_consistencies_ma_vs_frames",
    ):
        check_graph(run_dir / f"graph/{name}.png")
        check_graph(run_dir / f"graph/{name}.html")
