"""Session behaviour: seeded reproducibility, learning, checkpoints and state (the Trial's: test_trial.py)."""

import copy
import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from slm_lab.errors import SessionFailed
from slm_lab.experiment.control import Session
from slm_lab.spec.loader import get_spec, override_spec, tick

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

TINY = str(FIXTURES / "ppo_cartpole_tiny.json")


def session_spec(
    max_frame: int, seed: int = 7, spec_file: str = TINY, name: str = "ppo_cartpole_tiny"
) -> dict:
    spec = override_spec(
        get_spec(spec_file, name, [f"max_frame={max_frame}"] if spec_file == TINY else None), "train"
    )
    spec["env"]["max_frame"] = max_frame
    spec["meta"]["max_session"] = 1
    spec["meta"]["random_seed"] = seed
    tick(spec, "trial")
    tick(spec, "session")
    return spec


def run_session(spec: dict) -> tuple[Session, pd.DataFrame]:
    session = Session(copy.deepcopy(spec), "train")
    session.run()
    csv = Path(f"{spec['meta']['info_prepath']}_session_df_train.csv")
    return session, pd.read_csv(csv)


def test_without_rigorous_eval_the_eval_files_come_from_the_train_dataframe(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the reference writes them: every learning session also writes the eval df and metrics (and graphs,
    which test mode leaves out)."""
    monkeypatch.setenv("PY_ENV", "test")
    session, train = run_session(session_spec(512))
    meta = session.spec["meta"]
    evaluated = pd.read_csv(f"{meta['info_prepath']}_session_df_eval.csv")
    pd.testing.assert_frame_equal(train, evaluated, check_exact=True)
    for mode in ("train", "eval"):
        assert Path(f"{meta['info_prepath']}_session_metrics_{mode}.json").exists()


def test_same_seed_gives_identical_session_csv(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """D7: the same seed gives the same session CSV on CPU, apart from wall_t and fps; another seed does not."""
    monkeypatch.setenv("PY_ENV", "test")
    dfs = []
    for i, seed in enumerate((7, 7, 8)):
        monkeypatch.setenv("SLM_DATA_DIR", str(data_dir / f"run{i}"))
        dfs.append(run_session(session_spec(1536, seed=seed))[1])
    cols = [c for c in dfs[0].columns if c not in ("wall_t", "fps")]
    assert len(dfs[0]) >= 5
    pd.testing.assert_frame_equal(dfs[0][cols], dfs[1][cols])
    assert not dfs[0][cols].equals(dfs[2][cols])


def test_ppo_learns_cartpole_within_60k_frames(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo spec's PPO reaches a mean return (last ≤100 episodes) of at least 195 within 60k frames."""
    monkeypatch.setenv("PY_ENV", "test")
    spec = session_spec(
        60_000, seed=0, spec_file="slm_lab/spec/benchmark/ppo/ppo_cartpole.json", name="ppo_cartpole"
    )
    _, df = run_session(spec)
    assert df["frame"].iloc[-1] == 60_000
    assert df["total_reward"].max() >= 195, df["total_reward"].tail(10).tolist()


def test_checkpoint_rule_and_final_checkpoint(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows at every log_frequency (256 frames, 2 envs) and a final one at max_frame even when it is off-grid."""
    monkeypatch.setenv("PY_ENV", "test")
    spec = session_spec(1000)
    session, df = run_session(spec)
    assert df["frame"].tolist() == [256, 512, 768, 1000]
    assert df.columns.tolist()[:10] == [
        "total_reward", "total_reward_ma", "loss", "fps", "frame", "wall_t", "t", "epi", "opt_step", "lr",
    ]  # fmt: skip
    assert df.columns.tolist()[10:] == [
        "entropy_coef", "clip_eps", "entropy", "approx_kl", "clip_fraction", "explained_variance",
    ]  # fmt: skip
    # 2 epochs × (128 transitions / 64 per minibatch) × 2 nets per update, one update per 64 vector steps
    assert df["opt_step"].iloc[-1] == (1000 // 2 // 64) * 2 * 2 * 2
    assert session.env.clock.frame == 1000


def test_session_state_round_trip(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nets, optimizers, schedulers, memory, clock, tracker and RNG restore into a fresh session."""
    monkeypatch.setenv("PY_ENV", "test")
    spec = session_spec(600)
    session, _ = run_session(spec)
    model_prepath = spec["meta"]["model_prepath"]
    state = torch.load(f"{model_prepath}_state.pt", weights_only=False)
    resumed = copy.deepcopy(spec)
    resumed["meta"]["resume"] = True
    fresh = Session(resumed, "train")  # restores the state written at the end of the run
    algo, fresh_algo = session.agent.algorithm, fresh.agent.algorithm
    for name, net in algo.nets.items():
        for p, q in zip(net.parameters(), fresh_algo.nets[name].parameters(), strict=True):
            assert torch.equal(p, q)
    for name, optim in algo.optims.items():
        a, b = optim.state_dict()["state"], fresh_algo.optims[name].state_dict()["state"]
        assert all(torch.equal(a[k]["exp_avg"], b[k]["exp_avg"]) for k in a)
    assert fresh.env.clock.state_dict()["frame"] == session.env.clock.frame == 600
    assert fresh.env.clock.opt_step == session.env.clock.opt_step
    assert fresh_algo.var_schedulers["clip_eps"].val == algo.var_schedulers["clip_eps"].val
    assert fresh.tracker.rows == session.tracker.rows
    assert fresh.agent.memory.head == session.agent.memory.head == (600 // 2) % 64
    assert state["rng"]["numpy"] is not None
    fresh.env.close()


def test_ckpt_best_copies_the_latest_files_and_keeps_them_when_they_are_replaced(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ckpt-best taken from the latest files just saved holds those weights after the latest files move on."""
    monkeypatch.setenv("PY_ENV", "test")
    spec = session_spec(256)
    session = Session(copy.deepcopy(spec), "train")
    prepath = spec["meta"]["model_prepath"]
    net = session.agent.algorithm.net
    before = {k: v.clone() for k, v in net.state_dict().items()}
    session.agent.save(prepath)
    session.save_best(latest_saved=True)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    session.agent.save(prepath)
    best = torch.load(f"{prepath}_ckpt-best_net_model.pt", weights_only=True)
    latest = torch.load(f"{prepath}_net_model.pt", weights_only=True)
    assert all(torch.equal(best[k], before[k]) for k in before)
    assert all(torch.equal(latest[k], before[k] + 1.0) for k in before if before[k].is_floating_point())
    assert Path(f"{prepath}_ckpt-best_net_optim.pt").is_file()
    assert Path(f"{prepath}_ckpt-best_state.pt").is_file()
    session.close_envs()


def test_a_run_too_short_to_train_writes_nan_metrics_then_fails_naming_the_cause(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """40 frames end before the first 64-step rollout: the session's files (NaN metrics, no crash) are written,
    then it fails with one line instead of reporting a result it never learned."""
    monkeypatch.setenv("PY_ENV", "test")
    spec = session_spec(40)
    session = Session(copy.deepcopy(spec), "train")
    with pytest.raises(SessionFailed, match="session 0 never trained in 40 frames"):
        session.run()
    scalar = json.loads(Path(f"{spec['meta']['info_prepath']}_session_metrics_scalar_train.json").read_text())
    assert math.isnan(scalar["strength"]) and session.env.clock.frame == 40


@pytest.mark.slow  # about a minute on 2 cores; PPO, REINFORCE and A2C keep the default suite's "it learns" checks
def test_dqn_learns_cartpole_within_50k_frames(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DQN (4 envs, one gradient step of batch 32 per frame) reaches a mean return (last ≤100 episodes) of at least
    195 within 50k frames."""
    monkeypatch.setenv("PY_ENV", "test")
    spec = session_spec(
        50_000, seed=0, spec_file="slm_lab/spec/benchmark/dqn/dqn_cartpole.json", name="dqn_cartpole"
    )
    _, df = run_session(spec)
    assert df["frame"].iloc[-1] == 50_000
    assert df["total_reward"].max() >= 195, df["total_reward"].tail(10).tolist()


@pytest.mark.parametrize(
    ("spec_file", "name"),
    [
        ("slm_lab/spec/benchmark/reinforce/reinforce_cartpole.json", "reinforce_cartpole"),
        ("slm_lab/spec/benchmark/a2c/a2c_gae_cartpole.json", "a2c_gae_cartpole"),
    ],
)
def test_reinforce_and_a2c_learn_cartpole_within_100k_frames(
    spec_file: str, name: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """REINFORCE and A2C (4 envs) reach a mean return (last ≤100 episodes) of at least 150 within 100k frames."""
    monkeypatch.setenv("PY_ENV", "test")
    _, df = run_session(session_spec(100_000, seed=0, spec_file=spec_file, name=name))
    assert df["frame"].iloc[-1] == 100_000
    assert df["total_reward"].max() >= 150, df["total_reward"].tail(10).tolist()


def test_ppo_improves_pendulum_by_400_within_100k_frames(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Continuous PPO on Pendulum-v1 improves its mean return by at least 400 over its first evaluation (a small
    64x64 net with gamma 0.9, quicker to run than the benchmark spec with its 256x256 nets and 2048-step rollouts)."""
    monkeypatch.setenv("PY_ENV", "test")
    spec = session_spec(
        100_000, seed=0, spec_file=str(FIXTURES / "ppo_pendulum_fast.json"), name="ppo_pendulum"
    )
    _, df = run_session(spec)
    returns = df["total_reward"].dropna()
    assert df["frame"].iloc[-1] == 100_000
    assert returns.max() - returns.iloc[0] >= 400, returns.tolist()
