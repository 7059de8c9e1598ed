"""Every shipped spec validates and runs a few frames in test mode (the reference's smoke tests)."""

import math
from pathlib import Path

import pytest

from slm_lab.spec.library import shipped_specs, template_sets
from slm_lab.spec.loader import get_spec, override_spec

SPECS = shipped_specs()


def test_the_shipped_specs_cover_the_value_based_family() -> None:
    names = {name for _, name in SPECS}
    assert {"dqn_cartpole", "ddqn_per_cartpole", "dueling_ddqn_cartpole", "dqn_acrobot", "dqn_lunar",
            "ddqn_per_lunar", "sarsa_epsilon_greedy_cartpole", "ppo_cartpole"} <= names  # fmt: skip


def test_the_shipped_specs_cover_sac_and_crossq() -> None:
    names = {name for _, name in SPECS}
    assert {"sac_pendulum", "sac_lunar", "sac_per_lunar", "sac_cartpole", "sac_mujoco", "crossq_pendulum",
            "crossq_lunar", "crossq_cartpole", "crossq_mujoco"} <= names  # fmt: skip


def test_the_mujoco_templates_substitute_env_and_max_frame() -> None:
    for spec_file, name in SPECS:
        if "mujoco" in spec_file:
            spec = get_spec(spec_file, name, ["env=Pendulum-v1", "max_frame=2e6"])
            assert spec["env"]["name"] == "Pendulum-v1" and spec["env"]["max_frame"] == 2_000_000


@pytest.mark.parametrize(("spec_file", "spec_name"), SPECS, ids=[f"{f}:{n}" for f, n in SPECS])
def test_spec_runs_in_test_mode(
    spec_file: str, spec_name: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch, start_session
) -> None:
    monkeypatch.setenv("PY_ENV", "test")
    spec = override_spec(get_spec(spec_file, spec_name, template_sets(spec_file)), "test")
    spec["meta"]["random_seed"] = 0
    session = start_session(spec, "test")
    metrics = session.run()
    assert session.env.clock.frame >= 40
    assert set(metrics) == {"scalar", "local"}
    # it trained: optimizer steps ran and the last loss is a number (test mode starts training at once)
    assert session.env.clock.opt_step > 0
    assert math.isfinite(session.agent.loss)
