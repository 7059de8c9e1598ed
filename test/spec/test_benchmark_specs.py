"""Every shipped spec validates and runs a few frames in test mode (the reference's smoke tests)."""

import copy
import json
from pathlib import Path

import pytest
import yaml

from slm_lab import SPEC_DIR
from slm_lab.experiment.control import Session
from slm_lab.spec.loader import get_spec, override_spec, tick


def shipped_specs() -> list[tuple[str, str]]:
    found = []
    for path in sorted((SPEC_DIR / "benchmark").rglob("*")):
        if path.suffix == ".json":
            names = json.loads(path.read_text())
        elif path.suffix in (".yaml", ".yml"):
            names = yaml.safe_load(path.read_text())
        else:
            continue
        found += [(str(path.relative_to(SPEC_DIR)), name) for name in names if not name.startswith("_")]
    return found


SPECS = shipped_specs()


def test_the_shipped_specs_cover_the_value_based_family() -> None:
    names = {name for _, name in SPECS}
    assert {"dqn_cartpole", "ddqn_per_cartpole", "dueling_ddqn_cartpole", "dqn_acrobot", "dqn_lunar",
            "ddqn_per_lunar", "sarsa_epsilon_greedy_cartpole", "ppo_cartpole"} <= names  # fmt: skip


@pytest.mark.parametrize(("spec_file", "spec_name"), SPECS, ids=[f"{f}:{n}" for f, n in SPECS])
def test_spec_runs_in_test_mode(
    spec_file: str, spec_name: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PY_ENV", "test")
    spec = override_spec(get_spec(spec_file, spec_name), "test")
    spec["meta"]["random_seed"] = 0
    tick(spec, "trial")
    tick(spec, "session")
    session = Session(copy.deepcopy(spec), "test")
    metrics = session.run()
    assert session.env.clock.frame >= 40
    assert set(metrics) == {"scalar", "local"}
