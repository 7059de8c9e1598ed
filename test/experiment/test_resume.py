"""Resume (train@, →D10/B4), the resume files, enjoy@/eval@ (→D11) and rigorous evaluation (→D12)."""

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from slm_lab.errors import CheckpointError, Interrupted
from slm_lab.experiment.checkpoint import read_resume_state, resume_paths, write_resume_state
from slm_lab.experiment.control import Session
from slm_lab.spec.loader import get_spec, override_spec, tick

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
WALL_COLUMNS = ("wall_t", "fps")


def cli(args: list[str], cwd: Path, env: dict[str, str] | None = None, **popen: object) -> subprocess.Popen:
    full_env = {**os.environ, "SLM_DATA_DIR": str(cwd / "data"), "SLM_STATE_INTERVAL": "0", **(env or {})}
    full_env.pop("PY_ENV", None)
    return subprocess.Popen(
        [sys.executable, "-m", "slm_lab.cli.main", "run", *args],
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def finish(proc: subprocess.Popen, timeout: int = 300) -> tuple[int, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


def tiny_spec_file(tmp: Path, fixture: str, name: str, **meta: object) -> Path:
    """A copy of a fixture spec with some meta keys changed."""
    specs = json.loads((FIXTURES / f"{fixture}.json").read_text())
    specs[name]["meta"].update(meta)
    path = tmp / f"{fixture}.json"
    path.write_text(json.dumps(specs))
    return path


def only_run_dir(root: Path) -> Path:
    (predir,) = [p for p in (root / "data").iterdir() if p.is_dir()]
    return predir


def session_csvs(predir: Path) -> dict[str, pd.DataFrame]:
    return {p.name: pd.read_csv(p) for p in sorted(predir.glob("info/*_session_df_*.csv"))}


def assert_same_csvs(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    assert a and sorted(a) == sorted(b)
    for name, df in a.items():
        cols = [c for c in df.columns if c not in WALL_COLUMNS]
        assert df.columns.tolist() == b[name].columns.tolist()
        pd.testing.assert_frame_equal(df[cols], b[name][cols], obj=name)


def wait_for_rows(predir_root: Path, pattern: str, rows: int, proc: subprocess.Popen, timeout: float) -> None:
    """Wait until a session CSV matching ``pattern`` has at least ``rows`` rows."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended before it could be interrupted: {finish(proc)[1][-3000:]}"
        for path in predir_root.glob(f"data/*/info/{pattern}"):
            try:
                if len(path.read_text().splitlines()) - 1 >= rows:
                    return
            except OSError:
                pass
        time.sleep(0.05)
    raise AssertionError(f"no {pattern} with {rows} rows within {timeout}s")


# ---------------------------------------------------------------------------------------------------------------
# B4: SIGKILL, then train@latest, ends with the CSVs of an uninterrupted run


@pytest.mark.parametrize(
    ("fixture", "name", "frames", "sessions"),
    [
        # a vector env, an on-policy buffer and 2 session processes
        ("ppo_cartpole_tiny", "ppo_cartpole_tiny", 3072, 2),
        # a single env and a prioritized replay, in-process
        ("dqn_cartpole_tiny", "dqn_cartpole_tiny", 3072, 1),
    ],
)
def test_sigkilled_run_resumed_with_train_at_latest_ends_with_the_uninterrupted_csvs(
    tmp_path: Path, fixture: str, name: str, frames: int, sessions: int
) -> None:
    spec_file = tiny_spec_file(tmp_path, fixture, name, max_session=sessions)
    args = [str(spec_file), name, "train", "-s", f"max_frame={frames}"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    whole.mkdir(), cut.mkdir()
    reference = cli(args, whole)
    killed = cli(args, cut, start_new_session=True)
    wait_for_rows(cut, f"{name}_t0_s0_session_df_train.csv", 4, killed, timeout=240)
    os.killpg(killed.pid, signal.SIGKILL)  # the run and its session processes, mid-write or not
    killed.wait()
    predir = only_run_dir(cut)
    # really cut short, with a state to resume from (session 1, if any, may not have written one yet)
    state, _ = read_resume_state(f"{predir}/model/{name}_t0_s0")
    assert 0 < state["env"]["clock"]["frame"] < frames
    code, log = finish(cli([str(spec_file), name, "train@latest"], cut))
    assert code == 0, log[-3000:]
    assert "resumed from" in log and "Trial 0 done" in log
    assert only_run_dir(cut) == predir  # the same folder, no new one
    code, log = finish(reference)
    assert code == 0, log[-3000:]
    assert_same_csvs(session_csvs(only_run_dir(whole)), session_csvs(predir))


# 3 sessions on 2 cores take a minute: the default suite keeps the 1-session case, ``-m slow`` runs both
@pytest.mark.parametrize("sessions", [1, pytest.param(3, marks=pytest.mark.slow)])
def test_sigterm_saves_the_state_and_exits_then_resume_finishes(tmp_path: Path, sessions: int) -> None:
    """SIGTERM to the run (its only process, or the parent of its session processes): the running sessions save
    their state and stop, a queued one (3 sessions, 2 at a time) never starts, the run exits with 143 and names the
    train@ command; train@FOLDER then finishes the run."""
    spec_file = tiny_spec_file(tmp_path, "ppo_cartpole_tiny", "ppo_cartpole_tiny", max_session=sessions)
    args = [str(spec_file), "ppo_cartpole_tiny", "train", "-s", "max_frame=8192"]
    # with the default 10-minute interval, only the signal writes a state during this short run
    proc = cli(args, tmp_path, env={"SLM_STATE_INTERVAL": "600", "SLM_MAX_PARALLEL": "2"})
    wait_for_rows(tmp_path, "ppo_cartpole_tiny_t0_s0_session_df_train.csv", 3, proc, timeout=240)
    proc.send_signal(signal.SIGTERM)
    code, log = finish(proc)
    assert code == 128 + signal.SIGTERM, log[-3000:]
    assert "Traceback" not in log and "stopped by SIGTERM" in log and "train@" in log
    predir = only_run_dir(tmp_path)
    if sessions == 3:
        assert not list(predir.glob("log/*_s2.log"))  # queued when the run stopped: never started
    state, memory = read_resume_state(f"{predir}/model/ppo_cartpole_tiny_t0_s0")
    frame = state["env"]["clock"]["frame"]
    assert 0 < frame < 8192 and state["episodes"] is not None and "head" in memory
    assert f"continue with: slm-lab run train@{predir}" in log
    code, log = finish(cli([f"train@{predir}"], tmp_path))  # the command the log gave
    assert code == 0, log[-3000:]
    assert f"at frame {frame}" in log
    for s in range(sessions):
        df = pd.read_csv(predir / f"info/ppo_cartpole_tiny_t0_s{s}_session_df_train.csv")
        assert df["frame"].iloc[-1] == 8192 and df["frame"].is_monotonic_increasing


# ---------------------------------------------------------------------------------------------------------------
# D10 in-process: every algorithm family continues exactly after a stop


def session_spec(
    spec_file: str, name: str, frames: int, seed: int = 3, sets: bool = False, **meta: object
) -> dict:
    spec = override_spec(get_spec(spec_file, name, [f"max_frame={frames}"] if sets else None), "train")
    spec["env"]["max_frame"] = frames
    spec["meta"].update(max_session=1, random_seed=seed, log_frequency=frames // 8, **meta)
    tick(spec, "trial")
    tick(spec, "session")
    return spec


def stopped_and_resumed(spec: dict, stop_at: int = 3) -> Session:
    """Run a session that a SIGTERM stops after its ``stop_at``-th checkpoint, then resume it to the end."""
    session = Session(copy.deepcopy(spec), "train")
    count = [0]

    def stop_after(frame: int, ma: float, metrics: object) -> None:
        count[0] += 1
        if count[0] == stop_at:
            session.stop_signal = signal.SIGTERM

    session.reporter = stop_after
    with pytest.raises(Interrupted, match="stopped by SIGTERM"):
        session.run()
    resumed_spec = copy.deepcopy(spec)
    resumed_spec["meta"]["resume"] = True
    resumed = Session(resumed_spec, "train")
    assert resumed.resumed and resumed.env.clock.frame == session.env.clock.frame
    assert resumed.env.clock.opt_step == session.env.clock.opt_step
    resumed.run()
    return resumed


BENCH = "slm_lab/spec/benchmark"


@pytest.mark.parametrize(
    ("spec_file", "name", "frames", "env_keys"),
    [
        (f"{BENCH}/sac/sac_pendulum.json", "sac_pendulum", 640, {"normalize_obs": True}),
        (f"{BENCH}/sarsa/sarsa_cartpole.json", "sarsa_epsilon_greedy_cartpole", 1600, {}),
        (f"{BENCH}/sil/ppo_sil_cartpole.json", "ppo_sil_cartpole", 1600, {"normalize_reward": True}),
        (f"{BENCH}/a2c/a2c_gae_cartpole.json", "a2c_nstep_cartpole", 1600, {"num_envs": 3}),
    ],
)
def test_stopped_session_resumes_exactly(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, spec_file: str, name: str, frames: int, env_keys: dict
) -> None:
    """D10: after a SIGTERM stop and a resume, the session CSV equals an uninterrupted run's, for replay (SAC with
    obs normalisation), SARSA's held-back transition, SIL's own replay with reward normalisation, and n-step A2C."""
    monkeypatch.setenv("PY_ENV", "test")
    monkeypatch.setenv("SLM_STATE_INTERVAL", "0")
    dfs = []
    for run in ("whole", "cut"):
        monkeypatch.setenv("SLM_DATA_DIR", str(data_dir / run))
        spec = session_spec(spec_file, name, frames)
        spec["env"].update(env_keys)
        if run == "whole":
            Session(copy.deepcopy(spec), "train").run()
        else:
            stopped_and_resumed(spec)
        dfs.append(pd.read_csv(f"{spec['meta']['info_prepath']}_session_df_train.csv"))
    assert len(dfs[0]) == 8
    assert_same_csvs({"df": dfs[0]}, {"df": dfs[1]})


def test_rigorous_eval_resumes_exactly_and_picks_ckpt_best_by_eval(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """D12: evaluation rows every eval_frequency frames in their own CSV, scored on the episodes of each evaluation
    only; ckpt-best follows the eval MA; a stopped run resumes both dataframes exactly."""
    monkeypatch.setenv("PY_ENV", "test")
    monkeypatch.setenv("SLM_STATE_INTERVAL", "0")
    tiny = str(FIXTURES / "ppo_cartpole_tiny.json")
    csvs = []
    for run in ("whole", "cut"):
        monkeypatch.setenv("SLM_DATA_DIR", str(data_dir / run))
        spec = session_spec(tiny, "ppo_cartpole_tiny", 4096, sets=True, rigorous_eval=1, eval_frequency=1024)
        spec["env"]["normalize_obs"] = True
        session = Session(copy.deepcopy(spec), "train") if run == "whole" else None
        if session is not None:
            metrics = session.run()
        else:
            session = stopped_and_resumed(spec, stop_at=5)
        info = spec["meta"]["info_prepath"]
        csvs.append({m: pd.read_csv(f"{info}_session_df_{m}.csv") for m in ("train", "eval")})
    assert_same_csvs(csvs[0], csvs[1])
    train, evals = csvs[0]["train"], csvs[0]["eval"]
    assert evals["frame"].tolist() == [1024, 2048, 3072, 4096] and len(train) == 8
    assert not np.allclose(
        evals["total_reward"], train.set_index("frame").loc[evals["frame"], "total_reward"]
    )
    assert metrics["scalar"]["total_reward_ma"] == pytest.approx(evals["total_reward_ma"].iloc[-1])
    # ckpt-best was last written at the best eval MA: its state's eval rows end there
    best = torch.load(f"{spec['meta']['model_prepath']}_ckpt-best_state.pt", weights_only=False)
    best_rows = best["eval_tracker"]["rows"]
    assert best_rows[-1]["total_reward_ma"] == pytest.approx(evals["total_reward_ma"].max())
    # the eval env normalises with the training statistics, frozen
    assert session.eval_env is not None
    assert session.eval_env._obs_norm.rms is session.env._obs_norm.rms and session.eval_env._obs_norm.frozen


# ---------------------------------------------------------------------------------------------------------------
# the resume files


def test_resume_files_survive_a_kill_at_any_point_of_a_write(tmp_path: Path) -> None:
    """Two-phase commit: a pending state whose token matches the memory is rolled forward; one that does not is
    dropped; files of different checkpoints are refused with the file names."""
    prepath = str(tmp_path / "run_t0_s0")
    state_path, pending, memory_path = resume_paths(prepath)
    write_resume_state(prepath, {"frame": 1}, {"head": 1})
    old_state, old_memory = state_path.read_bytes(), memory_path.read_bytes()
    write_resume_state(prepath, {"frame": 2}, {"head": 2})
    new_state, new_memory = state_path.read_bytes(), memory_path.read_bytes()
    # killed after the pending state, before the memory: the old pair stands
    state_path.write_bytes(old_state), memory_path.write_bytes(old_memory), pending.write_bytes(new_state)
    state, memory = read_resume_state(prepath)
    assert (state["frame"], memory["head"]) == (1, 1) and not pending.exists()
    # killed after the memory, before the rename: the pending state is rolled forward
    state_path.write_bytes(old_state), memory_path.write_bytes(new_memory), pending.write_bytes(new_state)
    state, memory = read_resume_state(prepath)
    assert (state["frame"], memory["head"]) == (2, 2) and not pending.exists()
    # mixed files
    memory_path.write_bytes(old_memory)
    with pytest.raises(CheckpointError, match="are from different checkpoints"):
        read_resume_state(prepath)


def test_missing_or_corrupt_checkpoint_fails_naming_the_file(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CLI: train@ of a run whose memory file is missing, and enjoy@ of one whose ckpt-best model is corrupt, exit
    with one line naming the file."""
    from slm_lab.experiment.run import run_trial

    monkeypatch.setenv("PY_ENV", "test")
    spec_file = tiny_spec_file(tmp_path, "ppo_cartpole_tiny", "ppo_cartpole_tiny", max_session=1)
    spec = override_spec(get_spec(str(spec_file), "ppo_cartpole_tiny", ["max_frame=600"]), "train")
    run_trial(spec, str(spec_file), "ppo_cartpole_tiny", "train")  # in-process: the same files as the CLI
    predir = only_run_dir(tmp_path)
    memory = predir / "model/ppo_cartpole_tiny_t0_s0_memory.pt"
    model = predir / "model/ppo_cartpole_tiny_t0_s0_ckpt-best_net_model.pt"
    memory.unlink()
    model.write_bytes(b"not a checkpoint")
    for victim, mode, message in (
        (memory, "train@latest", "checkpoint file not found:"),
        (model, f"enjoy@{predir}/ppo_cartpole_tiny_t0_spec.json", "cannot read checkpoint file"),
    ):
        code, log = finish(cli([str(spec_file), "ppo_cartpole_tiny", mode], tmp_path))
        assert code == 1, log[-2000:]
        assert "Traceback" not in log and f"{message} {victim}" in log


# ---------------------------------------------------------------------------------------------------------------
# enjoy@ / eval@


def tree_digest(root: Path, skip: str) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and skip not in p.parts
    }


def test_enjoy_replays_the_best_session_and_leaves_the_source_untouched(tmp_path: Path) -> None:
    """D11: enjoy@ loads ckpt-best of the session with the highest total_reward_ma, acts with the explore var at its
    end value, logs every episode, writes only under enjoy/."""
    spec_file = tiny_spec_file(tmp_path, "dqn_cartpole_tiny", "dqn_cartpole_tiny", max_session=2)
    code, log = finish(cli([str(spec_file), "dqn_cartpole_tiny", "train", "-s", "max_frame=1024"], tmp_path))
    assert code == 0, log[-2000:]
    predir = only_run_dir(tmp_path)
    scalars = [
        json.loads((predir / f"info/dqn_cartpole_tiny_t0_s{s}_session_metrics_scalar_train.json").read_text())
        for s in range(2)
    ]
    best = int(np.argmax([m["total_reward_ma"] for m in scalars]))
    before = tree_digest(predir, "enjoy")
    trial_spec = predir / "dqn_cartpole_tiny_t0_spec.json"
    code, log = finish(cli([f"enjoy@{trial_spec}"], tmp_path))  # eval@: the next test
    assert code == 0, log[-3000:]
    assert f"session {best} (ckpt-best)" in log
    assert "episode 1: return" in log
    assert "explore_var:0.05" in log  # epsilon at its end value from the first frame
    assert tree_digest(predir, "enjoy") == before  # the run's own files: unchanged, byte for byte
    enjoyed = predir / "enjoy"
    df = pd.read_csv(enjoyed / f"info/dqn_cartpole_tiny_t0_s{best}_session_df_eval.csv")
    assert df["frame"].iloc[-1] == 1024 and (df["opt_step"] == 0).all()  # no learning
    assert not list(enjoyed.glob("model/*"))


def test_enjoy_session_uses_the_ckpt_best_normaliser_statistics_frozen(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """D34: the replay normalises with the statistics saved with ckpt-best, never updates them, and starts its own
    clock and returns."""
    from slm_lab.experiment.run import enjoy_session
    from slm_lab.spec.loader import save_spec

    monkeypatch.setenv("PY_ENV", "test")
    spec = session_spec(str(FIXTURES / "ppo_cartpole_tiny.json"), "ppo_cartpole_tiny", 1024, sets=True)
    spec["env"]["normalize_obs"] = True
    trial_spec = copy.deepcopy(spec)
    trial_spec["meta"]["session"] = -1
    spec_path = save_spec(trial_spec, "trial")
    Session(copy.deepcopy(spec), "train").run()
    best = torch.load(f"{spec['meta']['model_prepath']}_ckpt-best_state.pt", weights_only=False)
    session = enjoy_session(spec_path, "eval")
    try:
        norm = session.env._obs_norm
        assert norm.frozen and norm.rms.mean.tolist() == best["env"]["obs_norm"]["mean"]
        assert session.env.clock.frame == 0 and not session.env.returns
        assert session.spec["meta"]["predir"] == str(Path(spec["meta"]["predir"]) / "enjoy")
        net = session.agent.algorithm.net
        saved = torch.load(f"{spec['meta']['model_prepath']}_ckpt-best_net_model.pt", weights_only=True)
        assert all(torch.equal(v, net.state_dict()[k]) for k, v in saved.items())
    finally:
        session.close_envs()
