"""The search block: parsing, load-time errors, the Ray Tune param space for every sampler, and sampled
values written back into a spec."""

import random
from pathlib import Path

import pytest
from ray.tune.search import sample

from slm_lab.errors import SpecError
from slm_lab.spec.loader import get_spec
from slm_lab.spec.search_space import (
    ASHA_KEYS,
    SAMPLERS,
    apply_config,
    asha_kwargs,
    decode_config,
    param_space,
    parse_search,
    probe_config,
    probe_configs,
    search_errors,
)

# sampler -> (args, domain class, check of one sampled value)
CASES = {
    "choice": ([0.9, 0.99], sample.Categorical, lambda v: v in (0.9, 0.99)),
    "uniform": ([0.5, 1.5], sample.Float, lambda v: 0.5 <= v <= 1.5),
    "quniform": ([0.0, 1.0, 0.25], sample.Float, lambda v: 0 <= v <= 1 and (v / 0.25) == round(v / 0.25)),
    "loguniform": ([1e-4, 1e-2], sample.Float, lambda v: 1e-4 <= v <= 1e-2),
    "qloguniform": ([1e-4, 1e-1, 5e-5], sample.Float, lambda v: 1e-4 - 1e-12 <= v <= 1e-1 + 1e-12),
    "randn": ([100.0, 2.0], sample.Float, lambda v: 88.0 < v < 112.0),  # mean 100, sd 2: within 6 sd
    "qrandn": ([0.0, 10.0, 0.5], sample.Float, lambda v: (v / 0.5) == round(v / 0.5)),
    "randint": ([2, 5], sample.Integer, lambda v: v in (2, 3, 4)),  # hi exclusive
    "qrandint": ([16, 128, 16], sample.Integer, lambda v: 16 <= v <= 128 and v % 16 == 0),
    "lograndint": ([8, 512], sample.Integer, lambda v: 8 <= v < 512),
    "qlograndint": ([8, 512, 8], sample.Integer, lambda v: 8 <= v <= 512 and v % 8 == 0),
}


def test_every_sampler_is_covered() -> None:
    assert set(CASES) == set(SAMPLERS)


@pytest.mark.parametrize("sampler", sorted(CASES))
def test_param_space_builds_each_sampler(sampler: str) -> None:
    args, domain_cls, check = CASES[sampler]
    params, errors = parse_search({f"agent.algorithm.gamma__{sampler}": args})
    assert errors == []
    space = param_space(params)
    domain = space["agent.algorithm.gamma"]
    assert isinstance(domain, domain_cls)
    random.seed(0)
    values = [domain.sample(random_state=seed) for seed in range(30)]
    assert all(check(v) for v in values), values
    if sampler == "choice":
        assert domain.categories == args  # the whole list is the one argument


def test_nested_and_dotted_keys_flatten_to_the_same_paths() -> None:
    block = {
        "agent": {
            "algorithm": {"gamma__uniform": [0.9, 0.99]},
            "net.optim_spec.lr__loguniform": [1e-4, 1e-3],
        },
        "env.num_envs__choice": [1, 2],
    }
    params, errors = parse_search(block)
    assert errors == []
    assert [p.path for p in params] == ["agent.algorithm.gamma", "agent.net.optim_spec.lr", "env.num_envs"]
    assert params[0].key == "agent.algorithm.gamma__uniform"


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"agent.algorithm.gamma__grid_search": [0.9, 0.99]}, "use agent.algorithm.gamma__choice"),
        (
            {"agent.algorithm.gamma__normal": [0.9, 0.01]},
            "no 'normal' sampler; use agent.algorithm.gamma__randn",
        ),
        ({"agent.algorithm.gamma__beta": [1, 2]}, "unknown sampler 'beta'"),
        ({"agent.algorithm.gamma": [0.9, 0.99]}, "must be '<dotted.path>__<sampler>'"),
        ({"agent.algorithm.gamma__uniform": 0.9}, "the arguments must be a list"),
        ({"agent.algorithm.gamma__uniform": [0.9]}, "uniform takes a list of numbers [lo, hi]"),
        ({"agent.algorithm.gamma__uniform": [0.99, 0.9]}, "lower bound must be below the upper bound"),
        ({"agent.net.optim_spec.lr__loguniform": [0, 1e-3]}, "needs a lower bound > 0"),
        ({"agent.net.hid_layers__qrandint": [16, 128, 0]}, "the step q must be > 0"),
        ({"agent.algorithm.training_epoch__randint": [1.5, 4]}, "randint takes integers"),
        ({"agent.algorithm.gamma__randn": [0.9, -1]}, "standard deviation must be > 0"),
        ({"agent.algorithm.gamma__choice": []}, "non-empty list"),
        (
            {
                "agent": {"algorithm": {"gamma__uniform": [0.9, 0.99]}},
                "agent.algorithm.gamma__uniform": [0.9, 0.95],
            },
            "given twice",
        ),
        (
            {"agent.algorithm.gamma__uniform": [0.9, 0.99], "agent.algorithm.gamma__choice": [0.9]},
            "searched more than once",
        ),
    ],
)
def test_bad_search_keys_name_the_key(block: dict, message: str) -> None:
    _, errors = parse_search(block)
    assert len(errors) == 1 and message in errors[0], errors
    assert errors[0].startswith("search")


def spec_with(search: dict, **meta: object) -> dict:
    spec = get_spec("slm_lab/spec/benchmark/ppo/ppo_cartpole.json", "ppo_cartpole")
    spec["search"] = search
    spec["meta"].update(meta)
    return spec


def test_search_paths_must_land_in_the_spec() -> None:
    assert search_errors(spec_with({"agent.algorithm.gamma__uniform": [0.9, 0.99]})) == []
    errors = search_errors(spec_with({"name.x__choice": [1, 2]}))
    assert errors == ["search.name.x__choice: only agent.*, env.* and meta.* keys can be searched"]
    errors = search_errors(spec_with({"agent.algorithm.gamma.x__choice": [1, 2]}))  # gamma is a number
    assert errors == ["search.agent.algorithm.gamma.x__choice: agent.algorithm.gamma is not in the spec"]


def test_a_searched_key_no_spec_model_knows_fails_at_load(tmp_path) -> None:
    import json

    spec = json.loads(Path("slm_lab/spec/benchmark/ppo/ppo_cartpole.json").read_text())["ppo_cartpole"]
    spec["search"] = {"agent.algorthm.gamma__uniform": [0.9, 0.99]}
    path = tmp_path / "typo.json"
    path.write_text(json.dumps({"typo": spec}))
    with pytest.raises(
        SpecError, match=r"agent\.algorthm\.gamma is not a spec key; searching it would change nothing"
    ):
        get_spec(str(path), "typo")


def test_a_search_built_in_code_is_checked_for_unknown_keys_before_it_starts() -> None:
    from slm_lab.experiment.run import preflight_search

    spec = spec_with({"agent.algorthm.gamma__uniform": [0.9, 0.99]}, max_trial=2)  # never through the loader
    with pytest.raises(
        SpecError, match=r"agent\.algorthm\.gamma is not a spec key; searching it would change"
    ):
        preflight_search(spec, "spec.json", "ppo_cartpole")


def test_meta_keys_can_be_searched_except_the_lab_s_own() -> None:
    assert search_errors(spec_with({"meta.max_session__choice": [1, 2]})) == []
    assert search_errors(spec_with({"meta.log_frequency__choice": [500, 1000]})) == []
    for key in ("max_trial", "predir", "search_scheduler"):
        (error,) = search_errors(spec_with({f"meta.{key}__choice": [1, 2]}))
        assert f"meta.{key} is set by the lab or configures the search itself" in error
    spec = apply_config(spec_with({"meta.max_session__choice": [1, 2]}), {"meta.max_session": 2})
    assert spec["meta"]["max_session"] == 2


def test_a_searched_path_whose_parent_is_absent_is_created_and_validated(tmp_path) -> None:
    import json

    spec = spec_with({"agent.net.lr_scheduler_spec.name__choice": ["LinearToZero"]})
    spec["agent"]["net"].pop("lr_scheduler_spec", None)
    assert search_errors(spec) == []
    sampled = apply_config(spec, {"agent.net.lr_scheduler_spec.name": "LinearToZero"})
    assert sampled["agent"]["net"]["lr_scheduler_spec"] == {"name": "LinearToZero"}
    # the created section is validated like any before the search starts: here it lacks the schedule's name
    from slm_lab.experiment.run import preflight_search

    raw = json.loads(Path("slm_lab/spec/benchmark/ppo/ppo_cartpole.json").read_text())["ppo_cartpole"]
    raw["agent"]["algorithm"].pop("entropy_coef_spec", None)
    raw["search"] = {"agent.algorithm.entropy_coef_spec.start_val__choice": [0.01, 0.02]}
    raw["meta"]["max_trial"] = 2
    path = tmp_path / "created.json"
    path.write_text(json.dumps({"created": raw}))
    spec = get_spec(str(path), "created")
    with pytest.raises(SpecError, match=r"agent\.algorithm\.entropy_coef_spec\.name: field required"):
        preflight_search(spec, str(path), "created")


def test_scheduler_keys_are_checked() -> None:
    ok = spec_with(
        {}, search_scheduler={"grace_period": 1000, "reduction_factor": 3, "max_t": 5e4, "mode": "max"}
    )
    assert search_errors(ok) == []
    errors = search_errors(
        spec_with(
            {},
            search_scheduler={
                "grace": 10,
                "metric": "x",
                "reduction_factor": 0,
                "time_attr": "epi",
                "mode": "up",
            },
        )
    )
    assert any("search_scheduler.grace: unknown ASHA option" in e for e in errors)
    assert any("search_scheduler.metric: a trial reports total_reward_ma" in e for e in errors)
    assert any("search_scheduler.reduction_factor: expected a number > 0" in e for e in errors)
    assert any("search_scheduler.time_attr: a trial reports time as frame" in e for e in errors)
    assert any("search_scheduler.mode: expected 'max' or 'min'" in e for e in errors)


def test_the_asha_options_are_ray_s_own() -> None:
    import inspect

    from ray.tune.schedulers import AsyncHyperBandScheduler

    params = [p for p in inspect.signature(AsyncHyperBandScheduler.__init__).parameters if p != "self"]
    assert set(ASHA_KEYS) == set(params)
    kwargs = asha_kwargs({"max_t": 1000, "grace_period": 100}, max_frame=5000)
    assert kwargs == {"time_attr": "frame", "metric": "total_reward_ma", "mode": "max", "max_t": 1000,
                      "grace_period": 100}  # fmt: skip
    assert AsyncHyperBandScheduler(**kwargs).metric == "total_reward_ma"  # Ray takes them


def test_a_bad_search_block_fails_at_load(tmp_path) -> None:
    import json

    spec = spec_with({"agent.algorithm.gamma__grid_search": [0.9, 0.99]})
    raw = {"s": {k: spec[k] for k in ("agent", "env", "meta", "search")}}
    path = tmp_path / "s.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(SpecError, match=r"search\.agent\.algorithm\.gamma__grid_search: grid_search"):
        get_spec(str(path), "s")


def test_apply_config_writes_values_at_their_paths_and_drops_search() -> None:
    spec = spec_with({"agent.algorithm.gamma__uniform": [0.9, 0.99]})
    out = apply_config(
        spec, {"agent.algorithm.gamma": 0.95, "agent.net.hid_layers": [32, 32], "env.new_kwarg": 3}
    )
    assert out["agent"]["algorithm"]["gamma"] == 0.95
    assert out["agent"]["net"]["hid_layers"] == [32, 32]
    assert out["env"]["new_kwarg"] == 3
    assert "search" not in out
    assert spec["agent"]["algorithm"]["gamma"] != 0.95 and "search" in spec  # the original is untouched
    alias = apply_config(spec, {"agent.algorithm.clip_val_loss": True})  # D9 alias: the canonical key is set
    assert (
        alias["agent"]["algorithm"]["clip_vloss"] is True
        and "clip_val_loss" not in alias["agent"]["algorithm"]
    )
    assert apply_config(spec, {"agent.nope.x": 1})["agent"]["nope"] == {
        "x": 1
    }  # created; validation judges it
    with pytest.raises(SpecError, match=r"agent\.algorithm\.gamma is not in the spec"):
        apply_config(spec, {"agent.algorithm.gamma.x": 1})


def test_choices_of_lists_travel_as_json_and_decode_back() -> None:
    params, _ = parse_search(
        {"agent.net.hid_layers__choice": [[64], [64, 64]], "agent.algorithm.gamma__choice": [0.9]}
    )
    space = param_space(params)
    assert space["agent.net.hid_layers"].categories == ["[64]", "[64, 64]"]  # Optuna stores only scalars
    assert space["agent.algorithm.gamma"].categories == [0.9]
    decoded = decode_config(params, {"agent.net.hid_layers": "[64, 64]", "agent.algorithm.gamma": 0.9})
    assert decoded == {"agent.net.hid_layers": [64, 64], "agent.algorithm.gamma": 0.9}
    assert probe_config(params) == {"agent.net.hid_layers": [64], "agent.algorithm.gamma": 0.9}


def test_probes_try_every_choice_and_both_ends_of_each_range() -> None:
    params, _ = parse_search(
        {
            "agent.net.hid_layers__choice": [[64], [64, 64], [128]],
            "agent.algorithm.training_epoch__randint": [2, 5],
            "agent.algorithm.gamma__uniform": [0.9, 0.99],
            "agent.algorithm.lam__randn": [0.9, 0.01],
        }
    )
    probes = probe_configs(params)
    base = {"agent.net.hid_layers": [64], "agent.algorithm.training_epoch": 2, "agent.algorithm.gamma": 0.9,
            "agent.algorithm.lam": 0.9}  # fmt: skip
    assert probes[0][1:] == (base, None)
    assert [param.key for _, _, param in probes[1:]] == [
        "agent.net.hid_layers__choice",
        "agent.net.hid_layers__choice",
        "agent.algorithm.training_epoch__randint",
        "agent.algorithm.gamma__uniform",
    ]
    varied = [(label, {k: v for k, v in config.items() if v != base[k]}) for label, config, _ in probes[1:]]
    assert varied == [
        ("search.agent.net.hid_layers__choice = [64, 64]", {"agent.net.hid_layers": [64, 64]}),
        ("search.agent.net.hid_layers__choice = [128]", {"agent.net.hid_layers": [128]}),
        (
            "search.agent.algorithm.training_epoch__randint = 4",
            {"agent.algorithm.training_epoch": 4},
        ),  # hi excluded
        ("search.agent.algorithm.gamma__uniform = 0.99", {"agent.algorithm.gamma": 0.99}),
    ]  # a normal has no bounds to probe
