"""The spec models: defaults, types, routing, and that the schema stays light to import."""

import subprocess
import sys

import pytest
from pydantic import ValidationError

from slm_lab.spec.schema import (
    ALGORITHM_SPECS,
    MEMORY_SPECS,
    NET_SPECS,
    ActorCriticSpec,
    AlgorithmSpec,
    EnvSpec,
    MemorySpec,
    MetaSpec,
    MLPNetSpec,
    NetSpec,
    PPOSpec,
    VarSchedulerSpec,
    route_net_spec,
    unrouted_key,
)

CLIP = {"name": "no_decay", "start_val": 0.2}


def test_tables_hold_family_models():
    assert ALGORITHM_SPECS["PPO"] is PPOSpec
    assert all(issubclass(cls, AlgorithmSpec) for cls in ALGORITHM_SPECS.values())
    assert all(issubclass(cls, MemorySpec) for cls in MEMORY_SPECS.values())
    assert all(issubclass(cls, NetSpec) for cls in NET_SPECS.values())
    assert "OnPolicyBatchReplay" in MEMORY_SPECS and NET_SPECS["MLPNet"] is MLPNetSpec
    assert PPOSpec.ROUTES_NET_KEYS and not AlgorithmSpec.ROUTES_NET_KEYS
    assert PPOSpec.MEMORY_NAMES == ("OnPolicyBatchReplay",)


def test_ppo_defaults():
    ppo = PPOSpec.model_validate(
        {
            "name": "PPO",
            "gamma": 0.99,
            "lam": 0.95,
            "clip_eps_spec": CLIP,
            "time_horizon": 128,
            "training_epoch": 4,
        }
    )
    assert ppo.minibatch_size == 4 and ppo.normalize_advantages == "standardize"
    assert ppo.entropy_coef_spec is None and ppo.explore_var_spec is None
    assert (ppo.policy_loss_coef, ppo.val_loss_coef) == (1.0, 1.0)
    assert ppo.clip_vloss is False and ppo.symlog is False and ppo.normalize_v_targets is False
    assert ppo.action_pdtype == "default" and ppo.action_policy == "default"
    assert ppo.clip_eps_spec.end_val is None and ppo.clip_eps_spec.start_step == 0


def test_ppo_required_and_literal_keys():
    with pytest.raises(ValidationError) as info:
        PPOSpec.model_validate({"name": "PPO"})
    missing = {err["loc"][0] for err in info.value.errors() if err["type"] == "missing"}
    assert missing == {"gamma", "lam", "clip_eps_spec", "time_horizon", "training_epoch"}
    base = {
        "name": "PPO",
        "gamma": 0.99,
        "lam": 0.95,
        "clip_eps_spec": CLIP,
        "time_horizon": 8,
        "training_epoch": 1,
    }
    with pytest.raises(ValidationError):
        PPOSpec.model_validate({**base, "normalize_advantages": "minmax"})
    assert (
        PPOSpec.model_validate({**base, "normalize_advantages": "percentile"}).normalize_advantages
        == "percentile"
    )


def test_actor_critic_needs_lam_key_and_returns():
    with pytest.raises(ValidationError, match="lam"):
        ActorCriticSpec.model_validate({"name": "ActorCritic", "gamma": 0.99})
    with pytest.raises(ValidationError, match="num_step_returns is required"):
        ActorCriticSpec.model_validate({"name": "ActorCritic", "gamma": 0.99, "lam": None})
    ac = ActorCriticSpec.model_validate(
        {"name": "ActorCritic", "gamma": 0.99, "lam": None, "num_step_returns": 5}
    )
    assert ac.num_step_returns == 5


def test_var_scheduler_spec():
    spec = VarSchedulerSpec.model_validate(
        {"name": "linear_decay", "start_val": 1, "end_val": 0, "end_step": 1e4}
    )
    assert spec.end_val == 0.0 and spec.end_step == 10000 and isinstance(spec.end_step, int)
    with pytest.raises(ValidationError):
        VarSchedulerSpec.model_validate({"name": "cosine_decay", "start_val": 1})
    with pytest.raises(ValidationError):
        VarSchedulerSpec.model_validate({"name": "no_decay", "start_val": 1, "end_step": 1.5})


def test_mlp_net_defaults():
    net = MLPNetSpec.model_validate({"type": "MLPNet", "hid_layers": [64.0], "hid_layers_activation": "relu"})
    assert net.hid_layers == [64]
    assert net.loss_spec.name == "MSELoss" and net.optim_spec.name == "Adam" and net.optim_spec.kwargs == {}
    assert net.lr_scheduler_spec is None and net.update_type == "replace" and net.update_frequency == 1
    assert (
        net.polyak_coef == 0.0 and net.gpu == "auto" and net.layer_norm is False and net.batch_norm is False
    )
    custom = MLPNetSpec.model_validate(
        {
            "type": "MLPNet",
            "hid_layers": [],
            "hid_layers_activation": "relu",
            "optim_spec": {"name": "RMSprop", "lr": 1e-3, "alpha": 0.9},
            "gpu": False,
        }
    )
    assert custom.optim_spec.kwargs == {"lr": 1e-3, "alpha": 0.9} and custom.gpu is False
    with pytest.raises(ValidationError):
        MLPNetSpec.model_validate(
            {"type": "MLPNet", "hid_layers": [64], "hid_layers_activation": "relu", "update_type": "soft"}
        )


def test_env_spec_defaults_and_gym_kwargs():
    env = EnvSpec.model_validate({"name": "LunarLander-v3", "max_frame": 1e5, "continuous": True})
    assert env.max_frame == 100000 and env.num_envs == 1 and env.max_t is None and env.reward_scale == 1.0
    assert env.clip_obs is None and env.clip_reward is None
    assert env.gym_kwargs == {"continuous": True}
    normalized = EnvSpec.model_validate(
        {"name": "x", "max_frame": 1, "normalize_obs": True, "normalize_reward": True, "clip_reward": None}
    )
    assert normalized.clip_obs == 10.0 and normalized.clip_reward is None  # explicit null stays null
    assert EnvSpec.model_validate({"name": "x", "max_frame": 1, "clip_reward": [-1, 1]}).clip_reward == (
        -1.0,
        1.0,
    )


def test_meta_spec():
    meta = MetaSpec.model_validate({"max_session": 2})
    assert meta.distributed is False and meta.log_frequency == 10000 and meta.eval_frequency == 10000
    assert meta.rigorous_eval == 0 and meta.max_trial is None and meta.random_seed is None
    assert meta.search_resources == {"cpu": 1, "gpu": 0}
    assert (meta.experiment, meta.trial, meta.session) == (-1, -1, -1)
    assert MetaSpec.model_validate({"max_session": 1, "distributed": None}).distributed is False
    assert MetaSpec.model_validate({"max_session": 1, "distributed": "shared"}).distributed == "shared"
    for bad in (True, "true", "async"):
        with pytest.raises(ValidationError):
            MetaSpec.model_validate({"max_session": 1, "distributed": bad})


def test_route_net_spec():
    net = {
        "type": "MLPNet",
        "optim_spec": {"name": "Adam", "lr": 0.1},
        "actor_optim_spec": {"name": "Adam", "lr": 0.01},
        "critic_optim_spec": {"name": "SGD", "lr": 0.02},
        "critic_lr_scheduler_spec": {"name": "LinearToZero", "frame": 100},
        "actor_init_std": 0.01,
        "critic_init_std": 1.0,
        "use_same_optim": False,
    }
    actor = route_net_spec(net, "actor")
    critic = route_net_spec(net, "critic")
    assert actor["optim_spec"] == {"name": "Adam", "lr": 0.01} and "lr_scheduler_spec" not in actor
    assert critic["optim_spec"] == {"name": "SGD", "lr": 0.02}
    assert critic["lr_scheduler_spec"] == {"name": "LinearToZero", "frame": 100}
    for routed in (actor, critic):
        assert routed["actor_init_std"] == 0.01 and routed["critic_init_std"] == 1.0  # exempt (D3)
        assert not any(k.startswith(("actor_optim", "critic_optim", "critic_lr")) for k in routed)
    same = {**net, "use_same_optim": True}
    assert route_net_spec(same, "critic") == route_net_spec(same, "actor")
    assert route_net_spec(same, "critic")["optim_spec"] == {"name": "Adam", "lr": 0.01}
    assert unrouted_key("critic_arc") == "arc" and unrouted_key("actor_init_std") == "actor_init_std"
    with pytest.raises(ValueError):
        route_net_spec(net, "target")  # type: ignore[arg-type]


@pytest.mark.parametrize("module", ["slm_lab.spec.schema", "slm_lab.spec.loader"])
def test_import_is_light(module: str):
    code = (
        f"import sys, {module}; heavy = {{'torch', 'gymnasium'}} & set(sys.modules); assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
