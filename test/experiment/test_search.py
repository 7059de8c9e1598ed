"""Search (D37, B1, B2): trials reporting session means to a scheduler, result pairing by trial index, and
real searches through the CLI on a local Ray cluster, on a cluster started with `ray start` and attached by address,
with a failing trial, interrupted and restored, and `--stop-ray`."""

import contextlib
import copy
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from slm_lab.errors import LabError, SpecError
from slm_lab.experiment.control import Trial
from slm_lab.experiment.search import (
    TRIAL_INDEX,
    Experiment,
    IndexedSearcher,
    load_experiment_spec,
    prune_models,
)
from slm_lab.spec.loader import get_spec, override_spec, tick
from slm_lab.spec.search_space import parse_search

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TINY = FIXTURES / "ppo_cartpole_tiny.json"
RAY = Path(sys.executable).with_name("ray")


# ---------------------------------------------------------------------------------------------------------------
# units


def test_trial_reports_the_mean_of_its_parallel_sessions_at_each_checkpoint(data_dir: Path) -> None:
    """B2: with a reporter, both sessions run at once and each report is the mean of their MA at one checkpoint,
    with the trial metrics of the sessions so far."""
    spec = override_spec(get_spec(str(TINY), "ppo_cartpole_tiny", ["max_frame=768"]), "train")
    spec["meta"].update(max_session=2, log_frequency=128)
    spec["env"]["vectorization_mode"] = "async"  # session processes may start env processes of their own
    tick(spec, "trial")
    reports = []
    trial = Trial(copy.deepcopy(spec), "train", reporter=lambda *r: reports.append(r))
    scalar = trial.run()
    info = Path(spec["meta"]["predir"]) / "info"
    dfs = [pd.read_csv(info / f"ppo_cartpole_tiny_t0_s{s}_session_df_train.csv") for s in (0, 1)]
    merged = dfs[0][["frame", "total_reward_ma"]].merge(dfs[1][["frame", "total_reward_ma"]], on="frame")
    expected = {int(f): (a + b) / 2 for f, a, b in merged.itertuples(index=False) if a == a and b == b}
    assert len(reports) >= 4
    for frame, ma, _ in reports:
        assert ma == pytest.approx(expected[frame], rel=1e-6)
    assert [r[0] for r in reports] == sorted(r[0] for r in reports)
    last_frame, _, last_metrics = reports[-1]
    assert last_frame == 768 and last_metrics is not None
    assert last_metrics["scalar"]["total_reward_ma"] == pytest.approx(scalar["total_reward_ma"])
    assert len(last_metrics["local"]["mean_returns"]) == 2  # one series per session


def test_results_pair_with_trials_by_their_own_index() -> None:
    """D37: Ray returns results in any order; each is filed under the index in its own config/result."""
    spec = get_spec("slm_lab/spec/benchmark/ppo/ppo_cartpole.json", "ppo_cartpole")
    spec["search"] = {"agent.algorithm.gamma__uniform": [0.9, 0.99]}
    experiment = object.__new__(Experiment)
    experiment.params = parse_search(spec["search"])[0]

    def result(index: int, gamma: float, ma: float | None, error: Exception | None = None) -> SimpleNamespace:
        metrics = {TRIAL_INDEX: index, "total_reward_ma": ma or 0.0}
        if ma is not None:
            metrics["trial"] = {
                "scalar": {"total_reward_ma": ma, "strength": ma},
                "frames": [1],
                "mean_returns": [[ma]],
            }
        return SimpleNamespace(
            config={"agent.algorithm.gamma": gamma, TRIAL_INDEX: index}, metrics=metrics, error=error
        )

    grid = [
        result(2, 0.92, 20.0),
        result(0, 0.90, 5.0),
        result(3, 0.93, None, RuntimeError("boom\nlast line")),
        result(1, 0.91, 10.0),
    ]
    results = experiment.collect(grid)
    data, curves, failed = results.data, results.curves, results.failed
    assert list(data) == [0, 1, 2, 3]
    assert {t: d["agent.algorithm.gamma"] for t, d in data.items()} == {0: 0.90, 1: 0.91, 2: 0.92, 3: 0.93}
    assert {t: d.get("total_reward_ma") for t, d in data.items()} == {0: 5.0, 1: 10.0, 2: 20.0, 3: None}
    assert set(curves) == {0, 1, 2} and failed == {3: "last line"}


def test_indexed_searcher_numbers_suggestions_and_keeps_the_count_in_its_state() -> None:
    class Fixed:
        metric, mode = "m", "max"

        def suggest(self, trial_id: str) -> dict | None:
            return None if trial_id == "wait" else {"x": 1}

    searcher = IndexedSearcher(Fixed())
    assert searcher.suggest("a") == {"x": 1, TRIAL_INDEX: 0}
    assert searcher.suggest("wait") is None  # nothing suggested, no index used
    assert searcher.suggest("b") == {"x": 1, TRIAL_INDEX: 1}
    restored = IndexedSearcher(Fixed())
    restored.set_state(searcher.get_state())
    assert restored.suggest("c")[TRIAL_INDEX] == 2


def model_files(tmp_path: Path, trials: int) -> tuple[dict, Path]:
    spec = {"name": "s", "meta": {"predir": str(tmp_path)}}
    model = tmp_path / "model"
    model.mkdir()
    for t in range(trials):
        (model / f"s_t{t}_s0_net_model.pt").write_bytes(b"x")
    return spec, model


def test_prune_models_keeps_the_top_trials_by_total_reward_ma(tmp_path: Path) -> None:
    spec, model = model_files(tmp_path, 12)
    df = pd.DataFrame({"trial": list(range(12)), "total_reward_ma": [float("nan"), *range(11)]})
    assert prune_models(spec, df, keep=-1) == {None: []}
    removed = prune_models(spec, df, keep=2)
    assert sorted(p.name for p in model.iterdir()) == ["s_t10_s0_net_model.pt", "s_t11_s0_net_model.pt"]
    assert list(removed) == [None] and len(removed[None]) == 10


def test_prune_models_removes_the_files_of_a_trial_on_the_node_that_ran_it(tmp_path: Path) -> None:
    """B1: on a cluster, a trial's model files are on the disk of the node that ran it; a task on that node
    removes them. (One real node here, seen from a driver that claims to be elsewhere.)"""
    import ray

    spec, model = model_files(tmp_path, 3)
    df = pd.DataFrame({"trial": [0, 1, 2], "total_reward_ma": [3.0, 1.0, 2.0]})
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        node = ray.get_runtime_context().get_node_id()
        removed = prune_models(spec, df, keep=1, nodes={1: node, 2: node}, here="the driver's node")
    finally:
        ray.shutdown()
    assert sorted(Path(p).name for p in removed[node]) == ["s_t1_s0_net_model.pt", "s_t2_s0_net_model.pt"]
    assert removed[None] == []  # already gone when the driver looked
    assert [p.name for p in model.iterdir()] == ["s_t0_s0_net_model.pt"]


def test_restoring_needs_the_folder_of_a_search_with_its_saved_state(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="found 0"):
        load_experiment_spec(tmp_path)
    (tmp_path / "run_spec.json").write_text(json.dumps({"name": "run", "meta": {}}))
    (tmp_path / "run_t0_spec.json").write_text(json.dumps({"name": "run", "meta": {}}))
    with pytest.raises(SpecError, match=r"run_spec\.json: not the spec of a search"):
        load_experiment_spec(tmp_path)
    (tmp_path / "run_spec.json").write_text(json.dumps({"name": "run", "meta": {}, "search": {}}))
    with pytest.raises(LabError, match=r"no saved search state in .*ray_tune/run"):
        load_experiment_spec(tmp_path)


# ---------------------------------------------------------------------------------------------------------------
# real searches through the CLI


def write_spec(tmp_path: Path, name: str, search: dict, env: dict | None = None, **meta: object) -> Path:
    spec = json.loads(TINY.read_text())["ppo_cartpole_tiny"]
    spec["meta"].update({"max_session": 1, "max_trial": 4, "log_frequency": 250, "random_seed": 0, **meta})
    if env is not None:
        spec["env"] = env
    spec["search"] = search
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({name: spec}))
    return path


def lab_env(tmp_path: Path, pythonpath: bool = False, dashboard: bool = False) -> dict[str, str]:
    env = {**os.environ, "SLM_DATA_DIR": str(tmp_path / "data"), "RAY_USAGE_STATS_ENABLED": "0"}
    env["SLM_RAY_DASHBOARD"] = str(dashboard).lower()
    for key in ("PY_ENV", "RAY_ADDRESS", "PYTHONPATH"):
        env.pop(key, None)
    if pythonpath:
        env["PYTHONPATH"] = str(FIXTURES)
    return env


def slm_lab(
    args: list[str], tmp_path: Path, timeout: int = 400, **kw: object
) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        [sys.executable, "-m", "slm_lab.cli.main", *args], cwd=tmp_path, env=lab_env(tmp_path, **kw),
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    return out


def only_predir(tmp_path: Path) -> Path:
    predirs = [p for p in (tmp_path / "data").iterdir() if p.is_dir()]
    assert len(predirs) == 1, predirs
    return predirs[0]


def test_search_on_a_local_cluster_writes_the_experiment_outputs(tmp_path: Path, check_graph) -> None:
    """CartPole, 4 trials with ASHA, tiny budgets: the experiment df (sorted by strength), its graph, the
    multi-trial graphs, the trial data paired with each trial's own spec, and --keep 2 pruning."""
    name = "cartpole_search"
    search = {
        "agent": {"algorithm": {"gamma__uniform": [0.9, 0.999]}},
        "agent.net.actor_optim_spec.lr__loguniform": [1e-4, 1e-2],
    }
    path = write_spec(tmp_path, name, search, search_scheduler={"grace_period": 500, "reduction_factor": 2})
    args = ["run", str(path), name, "search", "-s", "max_frame=1500", "--keep", "2"]
    out = slm_lab(args, tmp_path, dashboard=True)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-5000:]
    assert "started a local Ray cluster" in log and "Experiment done: 4 trials, 0 failed" in log
    assert re.search(
        r"Ray dashboard: http://[\w.]+:\d+", log
    )  # ray[default] is installed, as the reference does
    predir = only_predir(tmp_path)
    assert re.fullmatch(rf"{name}_\d{{4}}_\d{{2}}_\d{{2}}_\d{{6}}", predir.name)
    df = pd.read_csv(predir / f"{name}_experiment_df.csv")
    assert df.equals(pd.read_csv(predir / "info" / f"{name}_experiment_df.csv"))
    assert sorted(df["trial"]) == [0, 1, 2, 3]
    assert list(df.columns[:3]) == ["trial", "agent.algorithm.gamma", "agent.net.actor_optim_spec.lr"]
    strength = df[
        "strength"
    ]  # sorted descending, NaN last (a trial stopped at its first rung has no strength)
    assert strength.dropna().is_monotonic_decreasing and strength.notna().cummin().equals(strength.notna())
    assert df["total_reward_ma"].notna().all()
    check_graph(predir / f"{name}_experiment_graph.png")
    for kind in ("mean_returns", "mean_returns_ma"):
        check_graph(predir / "graph" / f"{name}_multi_trial_graph_{kind}_vs_frames.png")
        assert (predir / f"{name}_multi_trial_graph_{kind}_vs_frames.png").is_file()
    data = json.loads((predir / "info" / f"{name}_trial_data_dict.json").read_text())
    assert sorted(data) == ["0", "1", "2", "3"]
    for t, row in data.items():  # D37: each row holds the values that trial itself ran with
        trial_spec = json.loads((predir / f"{name}_t{t}_spec.json").read_text())
        assert trial_spec["meta"]["trial"] == int(t)
        assert row["agent.algorithm.gamma"] == trial_spec["agent"]["algorithm"]["gamma"]
        assert row["agent.net.actor_optim_spec.lr"] == trial_spec["agent"]["net"]["actor_optim_spec"]["lr"]
    top = df.sort_values("total_reward_ma", ascending=False)["trial"].tolist()
    kept = {
        int(m.group(1)) for p in (predir / "model").iterdir() if (m := re.match(rf"{name}_t(\d+)_", p.name))
    }
    assert kept == set(top[:2])
    assert (predir / "ray_tune" / name).is_dir()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def marked_pids(var: str, value: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                environ = (proc / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"{var}={value}".encode() in environ:
                found.append(int(proc.name))
    return found


def command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def user_cluster(tmp_path: Path):
    """A Ray cluster started by the user with `ray start --head` on loopback (without the fixtures on its path);
    every process it starts carries a test-only marker, so it is torn down exactly."""
    marker = uuid.uuid4().hex
    port = free_port()
    env = {**lab_env(tmp_path), "SLM_TEST_CLUSTER": marker}
    start = subprocess.run(
        [str(RAY), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
         "--include-dashboard=false", "--disable-usage-stats"],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    try:
        assert start.returncode == 0, start.stdout[-3000:] + start.stderr[-3000:]
        yield f"127.0.0.1:{port}", marker
    finally:
        kill_all(marked_pids("SLM_TEST_CLUSTER", marker))


@pytest.mark.slow  # over a minute on 2 cores; the local-cluster search test keeps the default suite's coverage
def test_search_attaches_to_a_ray_cluster_by_address(tmp_path: Path, user_cluster) -> None:
    """B1: `--ray-address` runs the trials on an existing cluster, and the cluster keeps running afterwards, even
    after `--stop-ray`. A custom env found through the driver's PYTHONPATH imports in the workers; ASHA sees the
    mean of 2 parallel sessions (B2). The env raises for one sampled value: that trial is retried once, then
    reported failed with NaN metrics, and the other trials finish."""
    address, marker = user_cluster
    name = "attached_search"
    env = {"name": "custom_env:Flaky", "num_envs": 2, "max_frame": 800, "length": 4}
    path = write_spec(
        tmp_path, name, {"env.explode__choice": [True, False]}, env=env, max_trial=2, max_session=2,
        search_scheduler={"grace_period": 400}, search_resources={"cpu": 1},
    )  # fmt: skip
    out = slm_lab(["run", str(path), name, "search", "--ray-address", address], tmp_path, pythonpath=True)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-5000:]
    assert f"attached to the Ray cluster at {address}" in log
    assert "the 2 sessions of each trial run at once and ASHA sees their mean" in log
    predir = only_predir(tmp_path)
    df = pd.read_csv(predir / f"{name}_experiment_df.csv").set_index("trial")
    assert sorted(df.index) == [0, 1]
    exploded = df.index[df["env.explode"]].tolist()
    assert len(exploded) == 1, df  # seed 0 samples both values
    assert f"Experiment done: 2 trials, {len(exploded)} failed" in log
    for t in exploded:
        assert re.search(rf"trial {t} failed \(attempt 1 of 2\); retrying", log)
        assert f"trial {t} failed after 2 attempt(s); the search goes on" in log
        assert df.loc[t, ["total_reward_ma", "strength"]].isna().all()
    assert "Flaky env exploded" in log
    ran = df.index[~df["env.explode"]]
    assert df.loc[ran, "total_reward_ma"].notna().all()
    assert (predir / "info" / f"{name}_t{ran[0]}_s1_session_df_train.csv").is_file()
    cluster = marked_pids("SLM_TEST_CLUSTER", marker)
    assert cluster, "the attached cluster must keep running after the search"
    stop = slm_lab(["run", "--stop-ray"], tmp_path)
    assert stop.returncode == 0, stop.stderr
    time.sleep(1)
    assert all(Path(f"/proc/{pid}").exists() for pid in cluster[:3])


def test_stop_ray_signals_only_processes_marked_as_started_by_the_lab(tmp_path: Path) -> None:
    """`--stop-ray` stops processes carrying the lab's cluster mark and leaves every other process alone."""
    marker = uuid.uuid4().hex
    sleep = [sys.executable, "-c", "import time; time.sleep(300)"]
    base = {**lab_env(tmp_path), "SLM_TEST_PROC": marker}
    lab_made = subprocess.Popen(sleep, env={**base, "SLM_RAY_OWNER": "1"})
    user_made = subprocess.Popen(sleep, env=base)
    try:
        stop = slm_lab(["run", "--stop-ray"], tmp_path, timeout=60)
        assert stop.returncode == 0, stop.stderr
        assert str(lab_made.pid) in stop.stdout
        assert lab_made.wait(timeout=10) == -signal.SIGTERM
        assert user_made.poll() is None
    finally:
        kill_all([lab_made.pid, user_made.pid])
        lab_made.wait()
        user_made.wait()


def test_an_interrupted_search_is_restored_with_search_at(tmp_path: Path) -> None:
    """Ctrl-C stops a search with its Tune state saved; `search@latest` finishes the remaining trials in the same
    folder. While it runs, every process of the cluster it started carries the lab's mark."""
    name = "restored_search"
    path = write_spec(tmp_path, name, {"agent.algorithm.gamma__uniform": [0.9, 0.99]}, max_trial=3)
    driver = subprocess.Popen(
        [sys.executable, "-m", "slm_lab.cli.main", "run", str(path), name, "search", "-s", "max_frame=1500"],
        cwd=tmp_path, env=lab_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            data = tmp_path / "data"
            done = list(data.glob(f"*/{name}_t*_trial_metrics_scalar.json")) if data.is_dir() else []
            if done:
                break
            time.sleep(0.5)
        # every process of the cluster the search started carries its mark, which --stop-ray looks for
        commands = [command(pid) for pid in marked_pids("SLM_RAY_OWNER", str(driver.pid))]
        for part in ("gcs_server", "raylet", "ray::ImplicitFunc"):
            assert any(part in c for c in commands), (part, commands)
        driver.send_signal(signal.SIGINT)
        first, _ = driver.communicate(timeout=180)
    finally:
        driver.kill()
    predir = only_predir(tmp_path)
    assert re.search(r"Search interrupted: [123] of 3 trial\(s\) unfinished", first), first[-5000:]
    assert "Experiment done" not in first
    assert f"search@{predir}" in first  # how to continue it
    out = slm_lab(["run", str(path), name, "search@latest"], tmp_path)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-5000:]
    assert "restoring the search" in log and "Experiment done: 3 trials, 0 failed" in log
    df = pd.read_csv(predir / f"{name}_experiment_df.csv")
    assert sorted(df["trial"]) == [0, 1, 2] and df["total_reward_ma"].notna().all()
    assert only_predir(tmp_path) == predir  # the same folder, no new run
