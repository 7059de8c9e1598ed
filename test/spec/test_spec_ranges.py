"""Every number and boolean spec key has its range and type: out-of-range values, booleans given for numbers,
strings given for booleans and non-finite numbers are refused, one line per violation naming the dotted key and the
value, before anything is written."""

import copy
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from slm_lab.errors import LabError, SpecError
from slm_lab.experiment.run import preflight
from slm_lab.spec.bounds import check_memory_and_nets
from slm_lab.spec.loader import get_spec

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
NAME = "ppo_cartpole_tiny"


def _valid() -> dict[str, Any]:
    spec = json.loads((FIXTURES / f"{NAME}.json").read_text())
    spec[NAME]["env"]["max_frame"] = 256
    return spec


def _set(spec: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = spec[NAME]
    for key in parents:
        node = node[key]
    node[last] = value


def _load(tmp_path: Path, spec: dict[str, Any]) -> dict[str, Any]:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return get_spec(str(path), NAME)


BAD_VALUES = [
    ("env.max_frame", 0, "at least 1, got 0"),
    ("env.num_envs", 0, "at least 1, got 0"),
    ("env.max_frame", True, "expected a number, got True"),
    ("env.num_envs", 2.5, "expected an integer, got 2.5"),
    ("agent.algorithm.gamma", 1.5, "at most 1.0, got 1.5"),
    ("agent.algorithm.gamma", -0.1, "at least 0.0, got -0.1"),
    ("agent.algorithm.lam", 2, "at most 1.0, got 2"),
    ("agent.algorithm.minibatch_size", 0, "at least 1, got 0"),
    ("agent.algorithm.training_epoch", 0, "at least 1, got 0"),
    ("agent.algorithm.time_horizon", -5, "at least 1, got -5"),
    ("agent.net.hid_layers", [0], "at least 1, got 0"),
    ("agent.net.shared", "false", "expected true or false, got 'false'"),
    ("agent.net.shared", 1, "expected true or false, got 1"),
    ("agent.net.clip_grad_val", 0, "more than 0.0, got 0"),
    ("meta.log_frequency", 0, "at least 1, got 0"),
    ("meta.eval_frequency", -1, "at least 1, got -1"),
    ("meta.max_session", 0, "at least 1, got 0"),
    ("meta.random_seed", -1, "at least 0, got -1"),
    ("meta.random_seed", 2**40, f"at most {2**31 - 1}, got {2**40}"),
    ("meta.tensorboard", "yes", "expected true or false, got 'yes'"),
]


@pytest.mark.parametrize(
    ("key", "value", "message"), BAD_VALUES, ids=[f"{k}={v!r}" for k, v, _ in BAD_VALUES]
)
def test_an_out_of_range_or_mistyped_value_is_refused_naming_key_and_value(
    data_dir: Path, tmp_path: Path, key: str, value: Any, message: str
) -> None:
    spec = _valid()
    _set(spec, key, value)
    with pytest.raises(SpecError) as err:
        _load(tmp_path, spec)
    lines = [line.strip() for line in str(err.value).splitlines()[1:]]
    assert f"{key}: expected {message}" in lines or any(
        line.startswith(f"{key}") and message in line for line in lines
    ), str(err.value)
    assert not data_dir.exists()


def test_a_non_finite_number_is_refused(data_dir: Path, tmp_path: Path) -> None:
    """JSON as Python reads it accepts NaN and Infinity; YAML has .nan and .inf."""
    path = tmp_path / "nan.json"
    path.write_text(json.dumps(_valid()).replace('"val_loss_coef": 0.5', '"val_loss_coef": NaN'))
    with pytest.raises(
        SpecError, match=r"agent\.algorithm\.val_loss_coef: expected a finite number, got nan"
    ):
        get_spec(str(path), NAME)
    yaml_path = tmp_path / "inf.yaml"
    yaml_path.write_text(
        f"{NAME}:\n  agent: {{name: x}}\n  env: {{name: CartPole-v1, max_frame: .inf}}\n  meta: {{max_session: 1}}\n"
    )
    with pytest.raises(SpecError, match=r"env\.max_frame"):
        get_spec(str(yaml_path), NAME)


def test_the_cli_reports_each_violation_on_its_own_line_and_writes_nothing(tmp_path: Path) -> None:
    spec = _valid()
    _set(spec, "env.max_frame", 0)
    _set(spec, "agent.algorithm.gamma", 1.5)
    _set(spec, "agent.net.shared", "false")
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(spec))
    env = {**os.environ, "SLM_DATA_DIR": str(tmp_path / "data")}
    env.pop("PY_ENV", None)
    out = subprocess.run(
        [sys.executable, "-m", "slm_lab.cli.main", "run", str(path), NAME, "train"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode != 0 and "Traceback" not in out.stderr
    for line in (
        "env.max_frame: expected at least 1, got 0",
        "agent.algorithm.gamma: expected at most 1.0, got 1.5",
        "agent.net.shared: expected true or false, got 'false'",
    ):
        assert line in out.stderr, out.stderr
    assert not (tmp_path / "data").exists()


# A seeded fuzz of one valid spec: each case replaces one number or boolean with a value drawn from a hostile pool.
# Every outcome must be a spec that loads and builds (the value was valid for its key) or a SpecError that names the
# key; nothing else may escape, and nothing is written.
_POOL = [0, -1, 1, 2, 0.5, 1.5, -0.5, 1e9, 1e-9, True, False, None, "", "true", "1", [], {}, [0], 2**63]


def _leaves(node: Any, path: str = "") -> list[str]:
    if isinstance(node, dict):
        return [leaf for k, v in node.items() for leaf in _leaves(v, f"{path}.{k}" if path else k)]
    return [path] if isinstance(node, bool | int | float) else []


def test_fuzzing_a_valid_specs_values_gives_a_clean_load_or_an_error_naming_the_key(
    data_dir: Path, tmp_path: Path
) -> None:
    rng = random.Random(0)
    base = _valid()
    leaves = _leaves(base[NAME])
    assert len(leaves) > 20
    for _ in range(150):
        key = rng.choice(leaves)
        value = rng.choice(_POOL)
        spec = copy.deepcopy(base)
        _set(spec, key, value)
        try:
            preflight(
                _load(tmp_path, spec), "train"
            )  # builds the env and the agent once, as a run does first
        except SpecError as exc:
            assert key in str(exc) or key.rsplit(".", 1)[0] in str(exc), (key, value, str(exc))
        except LabError as exc:
            raise AssertionError((key, value, str(exc))) from exc
        assert not data_dir.exists(), (key, value)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("env.num_envs", 10**7, "env.num_envs: 10000000 needs about"),
        ("agent.algorithm.time_horizon", 10**11, "agent.algorithm.time_horizon: 100000000000 needs about"),
        ("agent.net.hid_layers", [10**6, 10**6], "agent.net.hid_layers: [1000000, 1000000] needs about"),
    ],
)
def test_a_size_the_machine_cannot_hold_is_refused_before_it_is_allocated(
    data_dir: Path, tmp_path: Path, key: str, value: Any, message: str
) -> None:
    spec = _valid()
    _set(spec, key, value)
    with pytest.raises(SpecError, match=r"this machine has [\d,.]+ GiB available") as err:
        preflight(_load(tmp_path, spec), "train")
    assert message in str(err.value)
    assert not data_dir.exists()


def test_a_replay_larger_than_memory_is_refused(data_dir: Path, tmp_path: Path) -> None:
    spec = json.loads((FIXTURES / "dqn_cartpole_tiny.json").read_text())
    name = next(iter(spec))
    spec[name]["agent"]["memory"]["max_size"] = 10**12
    path = tmp_path / "replay.json"
    path.write_text(json.dumps(spec).replace('"${max_frame}"', "256"))
    with pytest.raises(SpecError, match=r"agent\.memory\.max_size: 1000000000000 needs about"):
        preflight(get_spec(str(path), name), "train")


@pytest.mark.parametrize(
    ("net", "obs_shape", "key"),
    [
        ({"rnn_hidden_size": 10**6, "rnn_num_layers": 1}, (4,), "agent.net.rnn_hidden_size"),
        ({"rnn_hidden_size": 4096, "rnn_num_layers": 10**6}, (4,), "agent.net.rnn_num_layers"),
        ({"conv_hid_layers": [[32, 8, 4], [10**7, 4, 2]]}, (4, 84, 84), "agent.net.conv_hid_layers"),
    ],
)
def test_recurrent_cells_and_conv_kernels_are_bounded_by_memory(
    net: dict, obs_shape: tuple, key: str
) -> None:
    spec = {"agent": {"net": net, "memory": {}, "algorithm": {}}, "env": {"num_envs": 1}}
    with pytest.raises(SpecError, match=rf"{re.escape(key)}: .* needs about"):
        check_memory_and_nets(spec, obs_shape, 1, available=64 * 2**30)
    small = {k: ([[32, 8, 4]] if k == "conv_hid_layers" else 64) for k in net}
    check_memory_and_nets(
        {**spec, "agent": {**spec["agent"], "net": small}}, obs_shape, 1, available=64 * 2**30
    )
