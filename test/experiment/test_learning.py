"""Longer learning tests (marker ``slow``; run with ``uv run pytest -m slow``)."""

import copy
from pathlib import Path

import pytest

from slm_lab.experiment.control import Session
from slm_lab.spec.loader import get_spec, override_spec, tick


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_ppo_demo_solves_cartpole_in_200k_frames(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """The demo spec reaches a 100-checkpoint moving average of at least 400 by its 200k-frame budget."""
    monkeypatch.setenv("PY_ENV", "test")
    spec = override_spec(get_spec(), "train")
    spec["meta"].update(max_session=1, random_seed=seed)
    tick(spec, "trial")
    tick(spec, "session")
    session = Session(copy.deepcopy(spec), "train")
    session.run()
    df = session.tracker.df
    assert df["frame"].iloc[-1] == 200_000
    assert df["total_reward_ma"].iloc[-1] >= 400, df["total_reward_ma"].tail(5).tolist()


# Session seeds (random_seed + 1000·session) of benchmark sessions whose Q diverged, each with the change to the
# reference's spec that the shipped spec makes and the reference's value that diverged on that seed.
DIVERGENCES = {
    # importance-weighted prioritized replay with the Huber loss corrects the largest TD errors least: each
    # sample's gradient is capped at its weight, which shrinks as its error grows; MSE's gradient grows with it
    "ddqn_per_huber_loss": (
        "ddqn_per_boltzmann_cartpole",
        1586026379,
        "agent.net.loss_spec",
        {"name": "SmoothL1Loss"},
    ),
    # a target net replaced every 75 frames (about 75 gradient steps at this spec's replay ratio) chases its own
    # overestimates under the max; replaced every 500 it stays put long enough to be fitted
    "dqn_fast_target": ("dqn_boltzmann_cartpole", 353615647, "agent.net.update_frequency", 75),
}


def _set(spec: dict, dotted: str, value: object) -> None:
    *parents, last = dotted.split(".")
    node = spec
    for key in parents:
        node = node[key]
    node[last] = value


@pytest.mark.slow
@pytest.mark.parametrize("reference_value", [True, False], ids=["reference", "shipped"])
@pytest.mark.parametrize("case", list(DIVERGENCES))
def test_a_benchmark_seed_on_which_q_diverged_diverges_only_with_the_reference_value(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, case: str, reference_value: bool
) -> None:
    """On its seed, the session diverges within 100k frames (a late TD loss in the thousands) with the reference's
    value and learns with the shipped spec's. One torch thread, as each session of a 4-session trial on 2 cores
    ran: the divergence is chaotic and another thread count reorders the float sums."""
    monkeypatch.setenv("PY_ENV", "test")
    monkeypatch.setenv("SLM_CPUS", "1")
    name, seed, key, value = DIVERGENCES[case]
    spec = override_spec(get_spec("benchmark/dqn/dqn_cartpole.json", name), "train")
    if reference_value:
        _set(spec, key, value)
    spec["env"]["max_frame"] = 100_000
    spec["meta"].update(max_session=1, random_seed=seed)
    tick(spec, "trial")
    tick(spec, "session")
    session = Session(copy.deepcopy(spec), "train")
    session.run()
    df = session.tracker.df
    late_loss = float(df["loss"].tail(20).mean())
    if reference_value:
        assert late_loss > 1_000, late_loss
    else:
        assert late_loss < 10 and df["total_reward"].tail(20).mean() > 300, (
            late_loss,
            df["total_reward"].tail(5).tolist(),
        )
