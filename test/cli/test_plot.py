"""``slm-lab plot`` and ``slm-lab plot-list`` on run folders built from synthetic session dataframes."""

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from slm_lab.cli.main import app
from slm_lab.experiment import analysis
from slm_lab.lib import random_baseline, viz_multi
from slm_lab.lib.io_util import write_json

runner = CliRunner()


@pytest.fixture(autouse=True)
def env(monkeypatch):
    baselines = {"CartPole-v1": 20.0, "Acrobot-v1": -500.0}
    monkeypatch.setattr(
        random_baseline,
        "get_random_baseline",
        lambda env_name, compute_missing=False: baselines.get(env_name),
    )
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("PY_ENV", raising=False)
    monkeypatch.delenv("LOG_EXTRA", raising=False)


def make_run(
    data: Path, folder: str, algorithm: str, env_name: str, levels: list[float], memory: str = "Replay"
) -> Path:
    """A run folder with one trial whose sessions' returns are constant at ``levels`` (so each session's
    total_reward_ma is its level)."""
    run_dir = data / folder
    for sub in ("info", "graph", "log", "model"):
        (run_dir / sub).mkdir(parents=True)
    meta = {"predir": str(run_dir), "trial": 0, "session": -1, "max_session": len(levels)}
    spec = {
        "name": "demo",
        "agent": {"name": algorithm, "algorithm": {"name": algorithm}, "memory": {"name": memory}},
        "env": {"name": env_name},
        "meta": meta,
    }
    write_json(run_dir / "demo_t0_spec.json", spec)
    frames = np.arange(1, 6) * 100.0
    metrics = []
    for s, level in enumerate(levels):
        df = pd.DataFrame({"total_reward": np.full(5, level), "frame": frames, "opt_step": frames / 10})
        metrics.append(analysis.analyze_session({**spec, "meta": {**meta, "session": s}}, df, plot=False))
    analysis.analyze_trial(spec, metrics, plot=False)
    return run_dir


def invoke(args: list[str]):
    result = runner.invoke(app, args)
    return result.exit_code, result.output


def test_plot_overlays_runs_with_algorithm_labels(tmp_path, check_graph):
    data = tmp_path / "data"
    make_run(data, "ppo_2024_01_01_000000", "PPO", "CartPole-v1", [400.0, 450.0, 480.0])
    make_run(
        data, "dqn_2024_01_01_000000", "DoubleDQN", "CartPole-v1", [300.0, 200.0], memory="PrioritizedReplay"
    )
    out = tmp_path / "plots"
    code, output = invoke(["plot", "-f", "ppo_2024,dqn_2024_01_01_000000", "-d", str(data), "-o", str(out)])
    assert code == 0, output
    png = out / "CartPole-v1_multi_trial_graph_mean_returns_ma_vs_frames.png"
    check_graph(png)
    lines = [t for t in check_graph(png.with_suffix(".html"))["data"] if t["line"]["width"]]  # not bands
    assert [t["name"] for t in lines] == ["DDQN+PER", "PPO"]  # the fixed algorithm order
    assert [t["line"]["color"] for t in lines] == [
        viz_multi.ALGORITHM_COLORS["DDQN+PER"],
        viz_multi.ALGORITHM_COLORS["PPO"],
    ]
    assert lines[1]["y"][-1] == pytest.approx(np.mean([400.0, 450.0, 480.0]))
    assert f"Wrote {png}" in output
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [png.name, png.with_suffix(".html").name, "plotly.min.js"]
    )


def test_the_reference_s_long_options_work(tmp_path, check_graph):
    data = tmp_path / "data"
    make_run(data, "a", "PPO", "CartPole-v1", [400.0, 450.0])
    make_run(data, "b", "ActorCritic", "CartPole-v1", [100.0, 200.0])
    out = tmp_path / "plots"
    args = [
        "plot",
        "-f",
        "a,b",
        "--data-folder",
        str(data),
        "--output",
        str(out),
        "--legends",
        "x,y",
        "--no-legend",
    ]
    code, output = invoke(args)
    assert code == 0, output
    figure = check_graph(out / "CartPole-v1_multi_trial_graph_mean_returns_ma_vs_frames.html")
    assert {t["name"] for t in figure["data"] if t["line"]["width"]} == {"x", "y"}
    assert figure["layout"]["showlegend"] is False
    code, output = invoke(["plot-list", "--data-folder", str(data)])
    assert code == 0, output
    assert output.splitlines() == [  # each run folder with the mean of its sessions' levels
        "[x] a  trials:1  best total_reward_ma:425.00",
        "[x] b  trials:1  best total_reward_ma:150.00",
    ]


def test_plot_stats_draws_profiles_and_probability_of_improvement(tmp_path, check_graph):
    data = tmp_path / "data"
    a = make_run(data, "a", "PPO", "CartPole-v1", [400.0, 450.0, 480.0, 500.0])
    b = make_run(data, "b", "ActorCritic", "CartPole-v1", [100.0, 200.0, 300.0, 420.0])
    args = [
        "plot",
        "-f",
        f"{a},{b}",
        "-t",
        "Cart Pole",
        "-l",
        "mine,theirs",
        "-o",
        str(tmp_path),
        "--stats",
        "--no-legend",
    ]
    code, output = invoke(args)
    assert code == 0, output
    for stem in ("Cart_Pole_performance_profile", "Cart_Pole_probability_of_improvement"):
        check_graph(tmp_path / f"{stem}.png")
    layout = check_graph(tmp_path / "Cart_Pole_multi_trial_graph_mean_returns_ma_vs_frames.html")["layout"]
    assert layout["title"]["text"] == "Cart Pole" and layout["showlegend"] is False
    bars = check_graph(tmp_path / "Cart_Pole_probability_of_improvement.html")["data"][0]
    # P(mine > theirs): each of 400, 450, 480, 500 beats 100, 200 and 300, and all but 400 beat 420: 15 of 16 pairs
    assert bars["y"] == ["mine > theirs"] and bars["x"] == [15 / 16]
    assert "mine: 465 [" in output  # IQM of 400, 450, 480, 500 is (450 + 480) / 2
    assert "mine > theirs: 0.938 [" in output


def test_plot_normalises_scores_across_envs(tmp_path, check_graph):
    data = tmp_path / "data"
    make_run(data, "cp", "PPO", "CartPole-v1", [420.0, 220.0])
    make_run(data, "ac", "PPO", "Acrobot-v1", [-100.0, -300.0])
    code, output = invoke(["plot", "-f", "cp,ac", "-d", str(data), "-o", str(tmp_path / "o"), "--stats"])
    assert code == 0, output
    profile = check_graph(tmp_path / "o/CartPole-v1_vs_Acrobot-v1_performance_profile.html")
    assert "CartPole-v1 vs Acrobot-v1" in profile["layout"]["title"]["text"]
    # per env (score - R_rand) / (best - R_rand): CartPole 1 and 0.5, Acrobot 1 and 0.5, so the IQM is 0.75
    assert "normalized score" in output and "PPO: 0.75 [" in output
    assert not (tmp_path / "o/CartPole-v1_vs_Acrobot-v1_probability_of_improvement.png").exists()  # one label


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-f", "nope"], "-f 'nope': no such run folder"),
        (["-f", "run"], "matches several run folders"),
        (["-f", "run_a", "-l", "x,y"], "-l gives 2 labels for 1 folders"),
        (["-f", "empty"], "no trial metrics"),
        (["-f", "broken"], "cannot read"),
    ],
)
def test_plot_errors_are_one_clear_line(tmp_path, args, message):
    data = tmp_path / "data"
    make_run(data, "run_a", "PPO", "CartPole-v1", [1.0])
    make_run(data, "run_b", "PPO", "CartPole-v1", [1.0])
    (data / "empty").mkdir()
    (data / "broken/info").mkdir(parents=True)
    (data / "broken/info/x_t0_trial_metrics.json").write_text("{oops")
    code, output = invoke(["plot", *args, "-d", str(data), "-o", str(tmp_path / "o")])
    assert code == 1
    errors = [ln for ln in output.splitlines() if ln.startswith("Error: ")]
    assert len(errors) == 1 and message in errors[0], output
    assert "Traceback" not in output


def test_plot_list_marks_runs_with_trial_metrics(tmp_path):
    data = tmp_path / "data"
    make_run(data, "ppo_2024_01_01_000000", "PPO", "CartPole-v1", [100.0, 300.0])
    make_run(data, "nan_2024_01_01_000000", "PPO", "CartPole-v1", [math.nan, math.nan])
    (data / "crashed_2024_01_02_000000/info").mkdir(parents=True)
    (data / "_random_baseline.json").write_text("{}")
    code, output = invoke(["plot-list", "-d", str(data)])
    assert code == 0, output
    assert output.splitlines() == [
        "[ ] crashed_2024_01_02_000000",
        "[x] nan_2024_01_01_000000  trials:1  best total_reward_ma:nan",
        "[x] ppo_2024_01_01_000000  trials:1  best total_reward_ma:200.00",
    ]
    code, output = invoke(["plot-list", "-d", str(tmp_path / "missing")])
    assert code == 1 and output.startswith("Error: no data folder")


def test_plot_runs_without_torch(tmp_path):
    """`slm-lab plot` and `plot-list` import neither torch nor gymnasium, in a fresh interpreter."""
    data = tmp_path / "data"
    make_run(data, "a", "PPO", "CartPole-v1", [1.0, 2.0])
    code = (
        "import sys\nfrom slm_lab.cli.main import app\n"
        f"for args in (['plot', '-f', 'a', '-d', {str(data)!r}, '-o', {str(tmp_path / 'o')!r}, '--stats'],"
        f" ['plot-list', '-d', {str(data)!r}]):\n"
        "    try:\n        app(args)\n    except SystemExit as e:\n        assert not e.code, e.code\n"
        "assert 'torch' not in sys.modules and 'gymnasium' not in sys.modules, 'heavy import'\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "PY_ENV", "MPLBACKEND")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "o/CartPole-v1_performance_profile.png").is_file()
