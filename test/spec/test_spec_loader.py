"""The spec pipeline: reading, ``${var}`` substitution, validation messages, modes, ticking and saving."""

import copy
import json
import re
from pathlib import Path

import pytest
import yaml
from loguru import logger

from slm_lab import SPEC_DIR
from slm_lab.errors import SpecError
from slm_lab.spec import loader
from slm_lab.spec.loader import (
    env_short_name,
    get_spec,
    get_spec_models,
    load_spec_file,
    override_spec,
    save_spec,
    substitute_vars,
    tick,
    validate_spec,
)
from slm_lab.spec.schema import ALGORITHM_SPECS, MEMORY_SPECS, NET_SPECS, MetaSpec

DEMO_JSON = SPEC_DIR / "benchmark" / "ppo" / "ppo_cartpole.json"
DEMO_YAML = SPEC_DIR / "benchmark" / "ppo" / "ppo_cartpole.yaml"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Outputs go to a temporary data dir and the cwd is an empty temporary folder."""
    monkeypatch.setenv("SLM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("CUDA_OFFSET", raising=False)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return tmp_path


@pytest.fixture
def warnings_log():
    messages: list[str] = []
    handler_id = logger.add(lambda m: messages.append(m.record["message"]), level="WARNING")
    yield messages
    logger.remove(handler_id)


def demo() -> dict:
    """The raw demo spec (one spec, without its file wrapper)."""
    return json.loads(DEMO_JSON.read_text())["ppo_cartpole"]


def write_spec(folder: Path, spec: dict, name: str = "my_spec", suffix: str = ".json") -> Path:
    path = folder / f"{name}{suffix}"
    text = json.dumps({name: spec}) if suffix == ".json" else yaml.safe_dump({name: spec})
    path.write_text(text)
    return path


def spec_error(tmp_path: Path, spec: dict) -> str:
    """Load ``spec`` from a file and return the SpecError message."""
    path = write_spec(tmp_path, spec)
    with pytest.raises(SpecError) as info:
        get_spec(str(path), "my_spec")
    return str(info.value)


# ---------------------------------------------------------------------------------------------------------------
# reading


def test_demo_spec_values():
    spec = get_spec()
    algorithm, net = spec["agent"]["algorithm"], spec["agent"]["net"]
    assert spec["name"] == "ppo_cartpole"
    assert algorithm["gamma"] == 0.9769 and algorithm["lam"] == 0.9112
    assert algorithm["clip_eps_spec"]["start_val"] == algorithm["clip_eps_spec"]["end_val"] == 0.1312
    assert algorithm["entropy_coef_spec"]["start_val"] == 0.0074
    assert (algorithm["time_horizon"], algorithm["minibatch_size"], algorithm["training_epoch"]) == (
        256,
        128,
        15,
    )
    assert net["actor_optim_spec"] == {"name": "Adam", "lr": 5.909e-4}
    assert net["critic_optim_spec"] == {"name": "Adam", "lr": 6.352e-4}
    assert spec["env"] == {"name": "CartPole-v1", "num_envs": 4, "max_frame": 200000}
    assert spec["meta"]["max_session"] == 4 and spec["meta"]["log_frequency"] == 500


def test_json_and_yaml_give_identical_sections(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(loader, "_timestamp", lambda: "2025_01_02_030405")
    monkeypatch.setattr(loader, "_draw_seed", lambda: 1234)
    from_json = get_spec(str(DEMO_JSON), "ppo_cartpole")
    from_yaml = get_spec(str(DEMO_YAML), "ppo_cartpole")
    for key in ("agent", "env", "meta", "name"):
        assert from_json[key] == from_yaml[key], key


def test_yaml_anchors_and_merge_keys_give_independent_dicts(tmp_path: Path):
    path = tmp_path / "merge.yaml"
    path.write_text(
        "_adam: &adam {name: Adam, lr: 0.001}\n"
        "_meta: &meta {max_session: 1}\n"
        "a:\n"
        "  actor_optim_spec: {<<: *adam, lr: 0.002}\n"
        "  critic_optim_spec: *adam\n"
        "  other: *adam\n"
        "  meta: *meta\n"
    )
    spec = load_spec_file(path)["a"]
    assert spec["actor_optim_spec"] == {"name": "Adam", "lr": 0.002}
    assert spec["critic_optim_spec"] == {"name": "Adam", "lr": 0.001}
    spec["critic_optim_spec"]["lr"] = 0.5  # aliases must not share one object after loading
    assert spec["other"]["lr"] == 0.001


def test_yaml_reads_dotless_scientific_numbers_as_floats(tmp_path: Path):
    path = tmp_path / "sci.yml"
    path.write_text(
        "s:\n  a: 3e-4\n  b: 1e7\n  c: -2E5\n  d: 1.0e5\n  e: +5e3\n"
        "  env: CartPole-v1\n  f: e5\n  g: '1e5'\n  h: 1e5x\n  i: 12\n"
    )
    spec = load_spec_file(path)["s"]
    assert spec["a"] == 3e-4 and isinstance(spec["a"], float)
    assert spec["b"] == 1e7 and isinstance(spec["b"], float)
    assert spec["c"] == -2e5 and spec["d"] == 1e5 and spec["e"] == 5e3
    assert spec["env"] == "CartPole-v1" and spec["f"] == "e5" and spec["g"] == "1e5" and spec["h"] == "1e5x"
    assert spec["i"] == 12 and isinstance(spec["i"], int)


def test_yaml_scientific_max_frame_becomes_int(tmp_path: Path):
    text = DEMO_YAML.read_text().replace("max_frame: 200000", "max_frame: 1e7")
    path = tmp_path / "sci_demo.yaml"
    path.write_text(text)
    spec = get_spec(str(path), "ppo_cartpole")
    assert spec["env"]["max_frame"] == 10_000_000 and isinstance(spec["env"]["max_frame"], int)


def test_float_ints_are_cast_and_fractions_rejected(tmp_path: Path):
    spec = demo()
    spec["env"]["max_frame"] = 1e6
    spec["agent"]["net"]["hid_layers"] = [32.0, 16.0]
    spec["agent"]["algorithm"]["clip_eps_spec"]["end_step"] = 1e3
    loaded = get_spec(str(write_spec(tmp_path, spec)), "my_spec")
    assert loaded["env"]["max_frame"] == 1_000_000 and type(loaded["env"]["max_frame"]) is int
    assert loaded["agent"]["net"]["hid_layers"] == [32, 16]
    assert all(type(w) is int for w in loaded["agent"]["net"]["hid_layers"])
    assert type(loaded["agent"]["algorithm"]["clip_eps_spec"]["end_step"]) is int
    assert type(loaded["agent"]["algorithm"]["gamma"]) is float
    spec["meta"]["max_session"] = 1.5
    assert "meta.max_session: expected an integer, got 1.5" in spec_error(tmp_path, spec)


# ---------------------------------------------------------------------------------------------------------------
# ${var} substitution


def placeholder_spec_text() -> str:
    spec = demo()
    spec["env"]["name"] = "${env}"
    spec["env"]["max_frame"] = "${max_frame}"
    spec["env"]["tag"] = "${tag}"
    text = json.dumps({"var_spec": spec})
    return text.replace('"gamma": 0.9769', '"gamma": ${gamma}')  # a bare placeholder


def test_substitution_numeric_textual_and_value_with_equals(tmp_path: Path):
    path = tmp_path / "vars.json"
    path.write_text(placeholder_spec_text())
    sets = ["env=CartPole-v1", "max_frame=3e6", "gamma=0.5", "tag=a=b"]
    spec = get_spec(str(path), "var_spec", sets)
    assert spec["env"]["max_frame"] == 3_000_000 and type(spec["env"]["max_frame"]) is int
    assert spec["agent"]["algorithm"]["gamma"] == 0.5
    assert spec["env"]["name"] == "CartPole-v1"
    assert spec["env"]["tag"] == "a=b"
    assert spec["name"] == "var_spec_cartpole"


def test_substitute_vars_text_level():
    text = "a: '${x}'\nb: \"${x}\"\nc: ${x}\nd: run_${x}\ne: ${y}\n"
    out = substitute_vars(text, ["x=1e3", "y=2.50"])
    assert out == "a: 1000\nb: 1000\nc: 1000\nd: run_1000\ne: 2.5\n"
    assert substitute_vars('"${n}"', ["n=abc"]) == '"abc"'
    assert substitute_vars('"${n}"', ["n=nan"]) == '"nan"'  # not a finite number: textual


def test_set_item_without_equals_is_an_error(tmp_path: Path):
    path = tmp_path / "vars.json"
    path.write_text(placeholder_spec_text())
    with pytest.raises(SpecError, match="KEY=VALUE"):
        get_spec(str(path), "var_spec", ["max_frame"])


def test_env_short_name_and_suffix(tmp_path: Path):
    assert env_short_name("ALE/Breakout-v5") == "breakout"
    assert env_short_name("CartPole-v1") == "cartpole"
    assert env_short_name("playground/CartpoleBalance") == "cartpolebalance"
    path = tmp_path / "vars.json"
    path.write_text(placeholder_spec_text())
    spec = get_spec(str(path), "var_spec", ["env=ALE/Breakout-v5", "max_frame=100", "gamma=0.99", "tag=x"])
    assert spec["name"] == "var_spec_breakout"
    assert Path(spec["meta"]["predir"]).name.startswith("var_spec_breakout_")


def test_leftover_placeholder_names_its_path(tmp_path: Path):
    path = tmp_path / "vars.json"
    path.write_text(placeholder_spec_text())
    with pytest.raises(SpecError) as info:
        get_spec(str(path), "var_spec", ["env=CartPole-v1", "gamma=0.9", "tag=x"])
    message = str(info.value)
    assert "env.max_frame" in message and "-s max_frame=" in message
    assert "vars.json" in message


# ---------------------------------------------------------------------------------------------------------------
# paths


def test_absolute_path(tmp_path: Path):
    path = write_spec(tmp_path, demo())
    assert path.is_absolute()
    assert get_spec(str(path), "my_spec")["name"] == "my_spec"


def test_cwd_relative_path():
    write_spec(Path.cwd(), demo(), name="local")
    assert get_spec("local.json", "local")["name"] == "local"


@pytest.mark.parametrize(
    "spec_file", ["benchmark/ppo/ppo_cartpole.json", "slm_lab/spec/benchmark/ppo/ppo_cartpole.json"]
)
def test_package_relative_path(spec_file: str):
    assert not (Path.cwd() / spec_file).exists()
    assert get_spec(spec_file, "ppo_cartpole")["agent"]["name"] == "PPO"


def test_missing_file_and_bad_extension(tmp_path: Path):
    with pytest.raises(SpecError, match="not found"):
        get_spec(str(tmp_path / "nope.json"), "x")
    bad = tmp_path / "spec.txt"
    bad.write_text("{}")
    with pytest.raises(SpecError, match=r"\.json, \.yaml or \.yml"):
        get_spec(str(bad), "x")


def test_missing_spec_name_lists_available(tmp_path: Path):
    path = tmp_path / "two.json"
    path.write_text(json.dumps({"first": demo(), "second": demo(), "_shared": {}}))
    with pytest.raises(SpecError) as info:
        get_spec(str(path), "third")
    message = str(info.value)
    assert "third" in message and "first, second" in message and "_shared" not in message


def test_get_spec_creates_nothing(isolated: Path):
    get_spec()
    assert not (isolated / "data").exists()
    assert list(Path.cwd().iterdir()) == []


# ---------------------------------------------------------------------------------------------------------------
# runtime meta keys


def test_runtime_meta_keys(monkeypatch: pytest.MonkeyPatch, isolated: Path):
    monkeypatch.setenv("CUDA_OFFSET", "3")
    meta = get_spec()["meta"]
    assert (meta["experiment"], meta["trial"], meta["session"]) == (-1, -1, -1)
    assert meta["cuda_offset"] == 3 and meta["resume"] is False
    assert re.fullmatch(r"\d{4}_\d{2}_\d{2}_\d{6}", meta["experiment_ts"])
    assert meta["git_sha"] == "unknown" or re.fullmatch(r"[0-9a-f]{40}", meta["git_sha"])
    assert meta["predir"] == str(isolated / "data" / f"ppo_cartpole_{meta['experiment_ts']}")
    assert all(
        meta[k] is None for k in ("prepath", "info_prepath", "graph_prepath", "log_prepath", "model_prepath")
    )


def test_random_seed_drawn_when_absent_and_kept_when_given(tmp_path: Path):
    seed = get_spec()["meta"]["random_seed"]
    assert isinstance(seed, int) and 0 <= seed < 2**31
    spec = demo()
    spec["meta"]["random_seed"] = 42.0
    loaded = get_spec(str(write_spec(tmp_path, spec)), "my_spec")
    assert loaded["meta"]["random_seed"] == 42 and type(loaded["meta"]["random_seed"]) is int


def test_missing_distributed_means_false(tmp_path: Path):
    spec = demo()
    del spec["meta"]["distributed"]
    loaded = get_spec(str(write_spec(tmp_path, spec)), "my_spec")
    assert loaded["meta"]["distributed"] is False
    assert get_spec_models(loaded).meta.distributed is False


# ---------------------------------------------------------------------------------------------------------------
# validation messages


def test_unknown_algorithm_lists_names(tmp_path: Path):
    spec = demo()
    spec["agent"]["algorithm"]["name"] = "HydraDQN"
    message = spec_error(tmp_path, spec)
    valid = ", ".join(sorted(ALGORITHM_SPECS))
    assert f"agent.algorithm.name: unknown algorithm 'HydraDQN'; valid names: {valid}" in message
    assert "my_spec.json" in message


def test_unknown_memory(tmp_path: Path):
    spec = demo()
    spec["agent"]["memory"]["name"] = "HydraReplay"
    message = spec_error(tmp_path, spec)
    valid = ", ".join(sorted(MEMORY_SPECS))
    assert f"agent.memory.name: unknown memory 'HydraReplay'; valid names: {valid}" in message


def test_ppo_requires_on_policy_batch_replay(tmp_path: Path):
    spec = demo()
    spec["agent"]["memory"] = {"name": "Replay", "batch_size": 32, "max_size": 1000}
    message = spec_error(tmp_path, spec)
    assert "agent.memory.name: PPO requires memory OnPolicyBatchReplay, got 'Replay'" in message


def test_unknown_net_type(tmp_path: Path):
    spec = demo()
    spec["agent"]["net"]["type"] = "HydraNet"
    valid = ", ".join(sorted(NET_SPECS))
    assert f"agent.net.type: unknown net type 'HydraNet'; valid names: {valid}" in spec_error(tmp_path, spec)


@pytest.mark.parametrize(
    ("section", "key", "dotted"),
    [
        (("agent", "algorithm"), "gamma", "agent.algorithm.gamma"),
        (("agent", "algorithm"), "clip_eps_spec", "agent.algorithm.clip_eps_spec"),
        (("agent", "net"), "hid_layers", "agent.net.hid_layers"),
        (("agent", "net"), "shared", "agent.net.shared"),
        (("env",), "max_frame", "env.max_frame"),
        (("meta",), "max_session", "meta.max_session"),
        ((), "agent", "agent"),
    ],
)
def test_missing_required_key(tmp_path: Path, section: tuple[str, ...], key: str, dotted: str):
    spec = demo()
    node = spec
    for part in section:
        node = node[part]
    del node[key]
    assert f"{dotted}: field required" in spec_error(tmp_path, spec)


def test_missing_routed_key_names_the_spec_key(tmp_path: Path):
    spec = demo()
    del spec["agent"]["net"]["actor_optim_spec"]["name"]
    assert "agent.net.actor_optim_spec.name: field required" in spec_error(tmp_path, spec)


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("env", "max_frame"), "abc", "env.max_frame: expected a number, got 'abc'"),
        (("agent", "algorithm", "gamma"), "high", "agent.algorithm.gamma: expected a number, got 'high'"),
        (("agent", "net", "hid_layers"), [64, "x"], "agent.net.hid_layers[1]: expected a number, got 'x'"),
        (("agent", "net", "hid_layers"), 64, "agent.net.hid_layers: expected a list, got 64"),
        (
            ("agent", "net", "gpu"),
            "maybe",
            "agent.net.gpu: expected true or false or one of 'auto', got 'maybe'",
        ),
        (("agent", "algorithm", "action_policy"), "greedy", "agent.algorithm.action_policy: expected one of"),
        (("env", "name"), 5, "env.name: expected a string, got 5"),
        (("agent", "algorithm"), "PPO", "agent.algorithm: expected a dict, got 'PPO'"),
        (("meta", "distributed"), "yes", "meta.distributed: expected false, 'synced' or 'shared', got 'yes'"),
        (("meta", "distributed"), True, "meta.distributed: expected false, 'synced' or 'shared', got True"),
    ],
)
def test_wrong_types(tmp_path: Path, path: tuple[str, ...], value: object, expected: str):
    spec = demo()
    node = spec
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    assert expected in spec_error(tmp_path, spec)


@pytest.mark.parametrize("value", ["synced", "shared", False])
def test_valid_distributed_values(tmp_path: Path, value: object):
    spec = demo()
    spec["meta"]["distributed"] = value
    assert get_spec(str(write_spec(tmp_path, spec)), "my_spec")["meta"]["distributed"] == value


def test_unknown_env_id_suggests_close_matches(tmp_path: Path):
    spec = demo()
    spec["env"]["name"] = "CartPol-v1"
    message = spec_error(tmp_path, spec)
    assert "env.name: unknown gymnasium env id 'CartPol-v1'" in message and "'CartPole-v1'" in message


def test_entry_point_env_ids_skip_the_registry_but_must_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    (tmp_path / "my_envs.py").write_text("from gymnasium.envs.classic_control import CartPoleEnv as MyEnv\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = demo()
    spec["env"]["name"] = "my_envs:MyEnv"
    assert get_spec(str(write_spec(tmp_path, spec)), "my_spec")["env"]["name"] == "my_envs:MyEnv"
    spec["env"]["name"] = "my_package.envs:MyEnv"
    assert "env.name 'my_package.envs:MyEnv': cannot import module 'my_package.envs'" in spec_error(
        tmp_path, spec
    )


@pytest.mark.parametrize("key", ["agent", "env"])
def test_v4_list_format_is_rejected(tmp_path: Path, key: str):
    spec = demo()
    spec[key] = [spec[key]]
    message = spec_error(tmp_path, spec)
    assert f"{key}: a list is the v4 spec format; v5 specs use one flat dict" in message


def test_aliases_are_renamed_and_conflicts_rejected(tmp_path: Path):
    spec = demo()
    del spec["agent"]["algorithm"]["clip_vloss"]
    spec["agent"]["algorithm"]["clip_val_loss"] = True
    spec["agent"]["algorithm"]["symlog_transform"] = True
    algorithm = get_spec(str(write_spec(tmp_path, spec)), "my_spec")["agent"]["algorithm"]
    assert algorithm["clip_vloss"] is True and algorithm["symlog"] is True
    assert "clip_val_loss" not in algorithm and "symlog_transform" not in algorithm
    spec["agent"]["algorithm"]["clip_vloss"] = False
    assert "agent.algorithm.clip_val_loss: alias of clip_vloss" in spec_error(tmp_path, spec)
    spec["agent"]["algorithm"]["clip_vloss"] = True  # same value: fine
    assert get_spec(str(write_spec(tmp_path, spec)), "my_spec")["agent"]["algorithm"]["clip_vloss"] is True


def test_all_errors_reported_together(tmp_path: Path):
    spec = demo()
    del spec["agent"]["algorithm"]["gamma"]
    spec["env"]["max_frame"] = "abc"
    message = spec_error(tmp_path, spec)
    assert "agent.algorithm.gamma: field required" in message and "env.max_frame:" in message


def test_validate_spec_does_not_modify_and_names_file():
    spec = demo()
    spec["name"] = "demo"
    spec["agent"]["algorithm"]["clip_val_loss"] = False
    del spec["agent"]["algorithm"]["clip_vloss"]
    before = copy.deepcopy(spec)
    validate_spec(spec, check_env=False)
    assert spec == before
    del spec["name"]
    with pytest.raises(SpecError, match=r"(?s)somefile\.json.*name: field required"):
        validate_spec(spec, "somefile.json")


def test_unknown_keys_warn_once_each_but_load(tmp_path: Path, warnings_log: list[str]):
    spec = demo()
    spec["agent"]["algorithm"]["foo_key"] = 1
    spec["agent"]["algorithm"]["clip_eps_spec"]["oops"] = 2
    spec["agent"]["memory"]["bar"] = 3
    spec["agent"]["net"]["baz"] = 4
    spec["agent"]["net"]["actor_qux"] = 5
    spec["agent"]["extra_agent_key"] = 6
    spec["meta"]["quux"] = 7
    spec["meta"]["num_gpus"] = 1
    spec["top_level"] = 8
    spec["env"]["continuous"] = True  # a gymnasium kwarg: no warning
    loaded = get_spec(str(write_spec(tmp_path, spec)), "my_spec")
    assert loaded["agent"]["algorithm"]["foo_key"] == 1 and loaded["env"]["continuous"] is True
    expected = [
        "agent.algorithm.foo_key",
        "agent.algorithm.clip_eps_spec.oops",
        "agent.memory.bar",
        "agent.net.baz",
        "agent.net.actor_qux",
        "agent.extra_agent_key",
        "meta.quux",
        "top_level",
    ]
    for key in expected:
        hits = [m for m in warnings_log if f"unknown spec key {key} " in m]
        assert len(hits) == 1, (key, warnings_log)
        assert "my_spec.json" in hits[0]
    assert sum("meta.num_gpus" in m for m in warnings_log) == 1
    assert len(warnings_log) == len(expected) + 1
    assert get_spec_models(loaded).env.gym_kwargs == {"continuous": True}


def test_known_spec_warns_nothing(warnings_log: list[str]):
    get_spec()
    assert warnings_log == []


def test_get_spec_models_routes_nets():
    models = get_spec_models(get_spec())
    assert models.algorithm.clip_eps_spec.start_val == 0.1312
    assert models.nets["net"].optim_spec.kwargs == {"lr": 5.909e-4}
    assert models.nets["critic_net"].optim_spec.kwargs == {"lr": 6.352e-4}
    assert models.memory.name == "OnPolicyBatchReplay" and models.env.num_envs == 4
    spec = get_spec()
    spec["agent"]["net"]["shared"] = True
    assert set(get_spec_models(spec).nets) == {"net"}


# ---------------------------------------------------------------------------------------------------------------
# modes, tick, save


def test_override_modes():
    spec = get_spec()
    dev = override_spec(spec, "dev")
    assert (dev["meta"]["max_session"], dev["meta"]["max_trial"]) == (1, 2)
    assert spec["meta"]["max_session"] == 4  # the input is not modified
    assert override_spec(spec, "train") == spec
    assert override_spec(spec, "train@latest") == spec
    for mode in ("enjoy@some/spec.json", "eval@x"):
        assert override_spec(spec, mode)["meta"]["max_session"] == 1
    with pytest.raises(SpecError, match="unknown mode 'fly'"):
        override_spec(spec, "fly")


def test_override_test_mode():
    spec = override_spec(get_spec(), "test")
    algorithm, env, meta = spec["agent"]["algorithm"], spec["env"], spec["meta"]
    assert algorithm["training_frequency"] == 8 and algorithm["time_horizon"] == 8
    assert "training_iter" not in algorithm  # not a PPO key, so not added
    assert (env["max_frame"], env["num_envs"], env["max_t"]) == (40, 2, 12)
    assert (meta["log_frequency"], meta["eval_frequency"], meta["max_session"], meta["max_trial"]) == (
        10,
        10,
        1,
        2,
    )
    validate_spec(spec, check_env=False)


def test_tick_sets_indices_prepaths_and_folders(isolated: Path):
    spec = get_spec()
    predir = spec["meta"]["predir"]
    tick(spec, "trial")
    meta = spec["meta"]
    assert (meta["experiment"], meta["trial"], meta["session"]) == (0, 0, -1)
    assert meta["predir"] == predir and Path(predir).parent == isolated / "data"
    assert meta["prepath"] == f"{predir}/ppo_cartpole_t0"
    assert meta["model_prepath"] == f"{predir}/model/ppo_cartpole_t0"
    for sub in ("info", "graph", "log", "model"):
        assert (Path(predir) / sub).is_dir()
        assert meta[f"{sub}_prepath"] == f"{predir}/{sub}/ppo_cartpole_t0"
    tick(spec, "session")
    tick(spec, "session")
    assert (meta["trial"], meta["session"]) == (0, 1)
    assert meta["log_prepath"] == f"{predir}/log/ppo_cartpole_t0_s1"
    tick(spec, "trial")
    assert (meta["trial"], meta["session"]) == (1, -1)
    tick(spec, "experiment")
    assert (meta["experiment"], meta["trial"], meta["session"]) == (1, -1, -1)
    assert meta["prepath"] == f"{meta['predir']}/ppo_cartpole"
    assert Path(meta["predir"], "info").is_dir()


def test_save_spec_writes_json(isolated: Path):
    spec = tick(get_spec(), "trial")
    run_path = save_spec(spec, "experiment")
    trial_path = save_spec(spec, "trial")
    assert run_path == f"{spec['meta']['predir']}/ppo_cartpole_spec.json"
    assert trial_path == f"{spec['meta']['predir']}/ppo_cartpole_t0_spec.json"
    text = Path(trial_path).read_text()
    assert text.startswith('{\n  "agent"')  # indent 2
    saved = json.loads(text)
    assert saved == spec
    assert saved["meta"]["git_sha"] and isinstance(saved["meta"]["random_seed"], int)
    validate_spec(saved, check_env=False)
    with pytest.raises(ValueError, match="session"):
        save_spec(spec, "session")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------------
# null, Random, update_frequency


def test_an_explicit_null_means_not_set_for_any_key(tmp_path: Path):
    raw = json.loads((SPEC_DIR / "benchmark" / "crossq" / "crossq_pendulum.json").read_text())
    name, spec = next(iter(raw.items()))
    # keys CrossQ has no use for (no target net) and keys it reads, all null: each takes its default
    spec["agent"]["net"].update(update_type=None, polyak_coef=None, update_frequency=None, clip_grad_val=None)
    spec["agent"]["algorithm"]["training_start_step"] = None
    spec["env"]["max_t"] = None
    spec["meta"]["rigorous_eval"] = None
    loaded = get_spec(str(write_spec(tmp_path, spec, name)), name)
    assert "update_type" not in loaded["agent"]["net"] and "polyak_coef" not in loaded["agent"]["net"]
    assert (
        loaded["agent"]["algorithm"].get("training_start_step") is None
    )  # a field where null is the default
    assert loaded["meta"]["rigorous_eval"] == MetaSpec.model_fields["rigorous_eval"].default
    # a null inside a list is a value and stays
    spec["agent"]["net"]["out_layer_activation"] = [None, "tanh"]
    loaded = get_spec(str(write_spec(tmp_path, spec, name)), name)
    assert loaded["agent"]["net"]["out_layer_activation"] == [None, "tanh"]


def test_a_required_key_given_null_is_reported_as_not_set(tmp_path: Path):
    spec = demo()
    spec["env"]["max_frame"] = None
    assert "env.max_frame: field required" in spec_error(tmp_path, spec)


def test_a_random_agent_needs_no_net(tmp_path: Path):
    spec = demo()
    spec["agent"] = {"name": "Random", "algorithm": {"name": "Random"}, "memory": {"name": "OnPolicyReplay"},
                     "net": {}}  # fmt: skip
    assert get_spec(str(write_spec(tmp_path, spec)), "my_spec")["agent"]["algorithm"]["name"] == "Random"


@pytest.mark.parametrize("value", [0.5, 2.5e3, 1000])
def test_update_frequency_may_be_a_float(tmp_path: Path, value: float):
    raw = json.loads((SPEC_DIR / "benchmark" / "dqn" / "dqn_cartpole.json").read_text())
    name, spec = next(iter(raw.items()))
    spec["agent"]["net"]["update_frequency"] = value
    loaded = get_spec(str(write_spec(tmp_path, spec, name)), name)
    assert loaded["agent"]["net"]["update_frequency"] == value


def test_a_fractional_update_frequency_replaces_the_target_every_step():
    import torch

    from slm_lab.lib.math_util import TargetUpdate
    from slm_lab.spec.schema import NetSpec

    update = TargetUpdate.from_spec(NetSpec(type="MLPNet", update_type="replace", update_frequency=0.5))
    for frame in (4, 7, 1001):
        target, net = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
        update([(target, net)], frame, num_envs=4)
        assert torch.equal(target.weight, net.weight)
    every_2500 = TargetUpdate.from_spec(NetSpec(type="MLPNet", update_type="replace", update_frequency=2.5e3))
    target, net = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    every_2500([(target, net)], 2504, num_envs=4)
    assert not torch.equal(target.weight, net.weight)
    every_2500([(target, net)], 5000, num_envs=4)
    assert torch.equal(target.weight, net.weight)
