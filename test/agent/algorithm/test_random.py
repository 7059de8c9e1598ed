"""The Random baseline: a spec with an empty net validates, a seeded session acts at random and repeats itself, and
nothing trains."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from slm_lab.spec.loader import get_spec, override_spec


def random_spec(tmp_path: Path, env: str, max_frame: int = 400) -> dict:
    spec = {
        "random_baseline": {
            "agent": {
                "name": "Random",
                "algorithm": {"name": "Random"},
                "memory": {"name": "OnPolicyReplay"},
                "net": {},
            },
            "env": {"name": env, "num_envs": 2, "max_t": None, "max_frame": max_frame},
            "meta": {"distributed": False, "log_frequency": 100, "eval_frequency": 200, "max_session": 1,
                     "max_trial": 1, "random_seed": 3},
        }
    }  # fmt: skip
    path = tmp_path / "random.json"
    path.write_text(json.dumps(spec))
    return override_spec(get_spec(str(path), "random_baseline"), "train")


@pytest.mark.parametrize("env", ["CartPole-v1", "Pendulum-v1"])
def test_a_random_session_acts_in_the_action_space_and_never_trains(
    data_dir: Path, tmp_path: Path, env: str, start_session
) -> None:
    session = start_session(random_spec(tmp_path, env), "train")
    actions = [session.agent.act(None) for _ in range(50)]
    space = session.env.action_space
    assert all(
        len(a) == 2 and all(space.contains(np.asarray(x, dtype=space.dtype)) for x in a) for a in actions
    )
    assert len({np.asarray(a).tobytes() for a in actions}) > 1  # not one action over and over
    session.run()
    df = pd.read_csv(Path(f"{session.spec['meta']['info_prepath']}_session_df_train.csv"))
    # as the reference's: each time the memory is ready (here, episodic: when an episode ends) one counted
    # optimizer step with a NaN loss, and no nets
    assert df["frame"].iloc[-1] == 400
    assert (
        0 < session.env.clock.opt_step <= 400 // 2 and df["opt_step"].iloc[-1] == session.env.clock.opt_step
    )
    assert df["loss"].isna().all()
    assert session.agent.algorithm.nets == {}


def test_a_seeded_random_session_repeats_itself(data_dir: Path, tmp_path: Path, start_session) -> None:
    dfs = []
    for _ in range(2):
        session = start_session(random_spec(tmp_path, "CartPole-v1"), "train")
        session.run()
        csv = Path(f"{session.spec['meta']['info_prepath']}_session_df_train.csv")
        dfs.append(pd.read_csv(csv).drop(columns=["wall_t", "fps"]))
    pd.testing.assert_frame_equal(dfs[0], dfs[1], check_exact=True)
    assert dfs[0]["total_reward"].notna().any()  # episodes ended, so the comparison covers returns
