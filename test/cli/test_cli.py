"""The CLI as users run it, in subprocesses: help, a full train run's outputs, invalid specs."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

REPO = Path(__file__).resolve().parents[2]
NAME = "ppo_cartpole_tiny"


def slm_lab(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SLM_DATA_DIR": str(cwd / "data")}
    env.pop("PY_ENV", None)
    return subprocess.run(
        [sys.executable, "-m", "slm_lab.cli.main", *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def test_help_answers_without_importing_torch() -> None:
    code = (
        "import sys\nfrom slm_lab.cli.main import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "try:\n    app(['run', '--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules and 'gymnasium' not in sys.modules, 'heavy import'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "modular deep reinforcement learning" in out.stdout
    assert "--set" in out.stdout and "--log-level" in out.stdout and "--log-extra" in out.stdout


def test_train_writes_every_output_file(tmp_path: Path, check_graph) -> None:
    """A 2-session train run (spawned processes) writes the full data/{name}_{ts}/ output layout, and
    ``slm-retro`` rebuilds its metric files byte for byte (D23)."""
    out = slm_lab(["run", str(FIXTURES / f"{NAME}.json"), NAME, "train", "-s", "max_frame=1024"], tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    predirs = list((tmp_path / "data").iterdir())
    assert len(predirs) == 1 and re.fullmatch(rf"{NAME}_\d{{4}}_\d{{2}}_\d{{2}}_\d{{6}}", predirs[0].name)
    predir = predirs[0]
    t, sessions = f"{NAME}_t0", [f"{NAME}_t0_s0", f"{NAME}_t0_s1"]
    expected = [
        f"{NAME}_spec.json",
        f"{t}_spec.json",
        f"{t}_trial_metrics_scalar.json",
        f"{t}_trial_graph_mean_returns_vs_frames.png",
        f"{t}_trial_graph_mean_returns_ma_vs_frames.png",
        f"info/{t}_trial_metrics.json",
        f"info/{t}_trial_metrics_scalar.json",
        f"graph/{t}_trial_graph_mean_returns_vs_frames.png",
        f"graph/{t}_trial_graph_mean_returns_ma_vs_frames.png",
        f"log/{NAME}.log",
        f"log/{t}.log",
    ]
    for s in sessions:
        for mode in (
            "train",
            "eval",
        ):  # without rigorous_eval the eval files hold the train df, as the reference's
            expected += [
                f"info/{s}_session_df_{mode}.csv",
                f"info/{s}_session_metrics_{mode}.json",
                f"info/{s}_session_metrics_scalar_{mode}.json",
                f"graph/{s}_session_graph_{mode}_mean_returns_vs_frames.png",
                f"graph/{s}_session_graph_{mode}_mean_returns_ma_vs_frames.png",
                f"graph/{s}_session_graph_{mode}_loss_vs_frame.png",
                f"graph/{s}_session_graph_{mode}_entropy_vs_frame.png",
            ]
        expected += [
            f"log/{s}.log",
            f"model/{s}_state.pt",
            f"model/{s}_memory.pt",
            f"model/{s}_ckpt-best_state.pt",
        ]
        for net in ("net", "critic_net"):
            for kind in ("model", "optim"):
                expected += [f"model/{s}_{net}_{kind}.pt", f"model/{s}_ckpt-best_{net}_{kind}.pt"]
    missing = [f for f in expected if not (predir / f).is_file()]
    assert not missing, f"missing outputs: {missing}"
    graphs = sorted(predir.rglob("*.png")) + sorted(predir.rglob("*.html"))
    # session graphs (train and eval) and trial graphs as PNG and HTML, 2 PNG copies
    assert len(graphs) == 4 * 2 * 2 * 2 + 2 * 2 + 2
    for graph in graphs:
        check_graph(graph)
    assert not list(predir.rglob("*.tmp")), "no temporary files are left behind"

    spec = json.loads((predir / f"{t}_spec.json").read_text())
    assert spec["meta"]["random_seed"] == 42 and spec["meta"]["git_sha"]
    assert spec["env"]["max_frame"] == 1024 and spec["meta"]["trial"] == 0
    metrics = json.loads((predir / f"info/{t}_trial_metrics_scalar.json").read_text())
    assert list(metrics) == [
        "frame", "total_reward_ma", "strength", "max_strength", "final_strength", "sample_efficiency",
        "training_efficiency", "stability", "consistency",
        "total_reward_ma_iqm", "total_reward_ma_iqm_ci_low", "total_reward_ma_iqm_ci_high",
    ]  # fmt: skip
    assert (
        metrics["total_reward_ma_iqm_ci_low"]
        <= metrics["total_reward_ma_iqm"]
        <= metrics["total_reward_ma_iqm_ci_high"]
    )
    assert re.search(
        r"trial_iqm: total_reward_ma IQM [0-9.]+, 95% CI \[[0-9.]+, [0-9.]+\] over 2 sessions", out.stdout
    )
    session_metrics = json.loads((predir / f"info/{sessions[0]}_session_metrics_train.json").read_text())
    assert set(session_metrics) == {"scalar", "local"}
    line = next(ln for ln in out.stdout.splitlines() if "trial_metrics:" in ln)
    number = r"(nan|-?[0-9.e+-]+)"
    keys = [
        "frame",
        "total_reward_ma",
        "strength",
        "max_strength",
        "final_strength",
        "sample_efficiency",
        "training_efficiency",
    ]
    pattern = " \\| ".join(f"{k}:{number}" for k in [*keys, "stability", "consistency"])
    assert re.search(rf"trial_metrics: {pattern}$", line), line
    assert "frame:1.02e+03" in line
    assert (
        f"SLM-Lab: Running {FIXTURES / f'{NAME}.json'} {NAME} train with 2 sessions | output: " in out.stdout
    )
    log = (predir / f"log/{sessions[1]}.log").read_text()
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \| INFO \| PID:\d+ \| slm_lab\.\S+:\w+ \| ", log, re.M)
    assert not list(predir.glob("log/events.out.tfevents*")), "TensorBoard only in dev mode unless meta asks"

    metric_files = {p: p.read_bytes() for p in predir.rglob("*metrics*.json")}
    assert len(metric_files) == 2 * 2 * 2 + 3  # each session's train and eval metrics, the trial's three
    for path in metric_files:
        path.unlink()
    retro = subprocess.run(
        [sys.executable, "-m", "slm_lab.cli.retro", str(predir)], capture_output=True, text=True, timeout=120
    )
    assert retro.returncode == 0, retro.stderr
    assert {p: p.read_bytes() for p in predir.rglob("*metrics*.json")} == metric_files
    retro_line = next(ln for ln in retro.stdout.splitlines() if ln.startswith("trial_metrics:"))
    assert retro_line == line[line.index("trial_metrics:") :]


def test_dev_mode_runs_one_session_with_training_checks(tmp_path: Path, check_graph) -> None:
    """Dev mode: one session, training checks, TensorBoard event files in log/; --log-extra adds its graphs and
    logs the session metrics."""
    args = ["run", str(FIXTURES / f"{NAME}.json"), NAME, "dev", "-s", "max_frame=512", "--log-extra"]
    out = slm_lab(args, tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    predir = next((tmp_path / "data").iterdir())
    assert not list(predir.glob("info/*_s1_*")), "dev mode runs a single session"
    header = (predir / f"info/{NAME}_t0_s0_session_df_train.csv").read_text().splitlines()[0]
    assert header.split(",")[10] == "grad_norm"
    events = list(predir.glob("log/events.out.tfevents.*"))
    assert len(events) == 1 and events[0].name.endswith(f"_{NAME}_t0_s0") and events[0].stat().st_size > 1000
    for graph in ("s0_session_graph_train_strengths_vs_frames", "trial_graph_consistencies_ma_vs_frames"):
        check_graph(predir / f"graph/{NAME}_t0_{graph}.png")
        check_graph(predir / f"graph/{NAME}_t0_{graph}.html")
    assert re.search(r"Session 0 metrics: total_reward_ma:\S+ \| strength:", out.stdout)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "nope.json", "x", "train"], "nope.json"),
        (["run", str(FIXTURES / f"{NAME}.json"), "missing_name", "train"], f"available: {NAME}"),
        (["run", str(FIXTURES / f"{NAME}.json"), NAME, "train"], "${max_frame}"),
        (["run", str(FIXTURES / f"{NAME}.json"), NAME, "train", "-s", "max_frame=abc"], "env.max_frame"),
        (["run", str(FIXTURES / "bad_specs.yaml"), "unknown_algorithm", "train"], "agent.algorithm.name"),
        (["run", str(FIXTURES / "bad_specs.yaml"), "bad_pdtype", "train"], "agent.algorithm.action_pdtype"),
        (["run", str(FIXTURES / "bad_specs.yaml"), "bad_optimizer", "train"], "optim_spec.name"),
        (["run", str(FIXTURES / "bad_specs.yaml"), "bad_env", "train"], "env.name"),
        (["run", str(FIXTURES / "bad_specs.yaml"), "distributed_synced", "train"], "meta.distributed"),
        (["run", str(FIXTURES / f"{NAME}.json"), NAME, "fly@latest"], "unknown mode"),
        (["run", str(FIXTURES / f"{NAME}.json"), NAME, "enjoy"], "unknown mode"),
        (["run", str(FIXTURES / f"{NAME}.json"), NAME, "train@latest"], f"no run folder {NAME}_<timestamp>"),
        (["run", str(FIXTURES / f"{NAME}.json"), NAME, "train@nowhere"], "run folder not found: nowhere"),
        (["run", "enjoy@data/x_t0_spec.json"], "enjoy@data/x_t0_spec.json: spec file not found"),
        (["run", "x.json", "x", "eval@nope.json"], "eval@nope.json: spec file not found"),
        (
            ["run", str(FIXTURES / f"{NAME}.json"), NAME, "search", "-s", "max_frame=100"],
            "needs a 'search' block",
        ),
        (["run", str(FIXTURES / "bad_specs.yaml"), "search_normal_sampler", "search"], "gamma__randn"),
        (
            ["run", str(FIXTURES / "bad_specs.yaml"), "search_typo_key", "search"],
            "agent.algorithm.gammma is not",
        ),
        (["run", str(FIXTURES / "bad_specs.yaml"), "search_bad_value", "search"], "training_epoch"),
        (["run", str(FIXTURES / "bad_specs.yaml"), "search_no_max_trial", "search"], "meta.max_trial"),
        (["run", str(FIXTURES / f"{NAME}.json"), NAME, "search@latest"], f"no run folder {NAME}_<timestamp>"),
        (["run", str(FIXTURES / f"{NAME}.json"), NAME, "search@nowhere"], "run folder not found: nowhere"),
    ],
)
def test_invalid_input_exits_with_one_clear_line_and_writes_nothing(
    tmp_path: Path, args: list[str], message: str
) -> None:
    out = slm_lab(args, tmp_path, timeout=120)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr + out.stdout
    assert message in out.stderr, out.stderr
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())
