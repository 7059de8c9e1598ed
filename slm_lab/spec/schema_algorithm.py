"""The algorithm spec models (``agent.algorithm``), their name -> model table, and net-key routing.

``ALGORITHM_SPECS`` maps each algorithm name to its model; ``ALGORITHM_KEY_ALIASES`` renames old algorithm keys
(D9). The actor-critic family routes ``actor_*``/``critic_*`` net keys to one net each (``route_net_spec``).
Imports only pydantic, so the CLI and spec checks stay light.
"""

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from slm_lab.spec.schema_base import (
    Count,
    Flag,
    Fraction,
    Frequency,
    NonNegInt,
    NonNegNumber,
    Number,
    PosNumber,
    SpecModel,
    VarSchedulerSpec,
)

__all__ = [
    "ALGORITHM_KEY_ALIASES",
    "ALGORITHM_SPECS",
    "ROUTING_EXEMPT_KEYS",
    "ActorCriticBaseSpec",
    "ActorCriticSpec",
    "AlgorithmSpec",
    "CrossQSpec",
    "DQNSpec",
    "EntropyAnnealSpec",
    "PPOSILSpec",
    "PPOSpec",
    "RandomSpec",
    "ReinforceSpec",
    "SARSASpec",
    "SILSpec",
    "SoftActorCriticSpec",
    "VanillaDQNSpec",
    "route_net_spec",
    "route_net_spec_with_origins",
    "unrouted_key",
]

ROUTING_EXEMPT_KEYS = ("actor_init_std", "critic_init_std")


class AlgorithmSpec(SpecModel):
    """Keys every algorithm reads. Class variables describe cross-section rules the loader enforces."""

    ROUTES_NET_KEYS: ClassVar[bool] = False
    """True: ``actor_*``/``critic_*`` net keys go to that net only, prefix removed."""
    MEMORY_NAMES: ClassVar[tuple[str, ...] | None] = None
    """Memory classes this algorithm works with; None means any."""
    REQUIRED_NET_KEYS: ClassVar[tuple[str, ...]] = ()
    """Net keys that are optional in general but required by this algorithm."""
    FORBIDDEN_NET_KEYS: ClassVar[tuple[str, ...]] = ()
    """Net keys this algorithm must not be given (they would be silently meaningless)."""
    USES_NET: ClassVar[bool] = True
    """False: the algorithm builds no net, and ``agent.net`` is not read (it may be empty)."""

    name: str
    action_pdtype: str | None = "default"
    action_policy: Literal["default", "random", "epsilon_greedy", "boltzmann"] = "default"
    explore_var_spec: VarSchedulerSpec | None = None
    gamma: Fraction
    training_frequency: Frequency | None = None


class RandomSpec(AlgorithmSpec):
    """The random-action baseline: no net, no learning."""

    USES_NET: ClassVar[bool] = False

    gamma: Fraction = 0.99


# how the policy gradient's weights (returns for Reinforce, advantages otherwise) are scaled before the loss:
# standardize per batch (PPO: per minibatch), divide by the EMA percentile range, or leave them as they are
AdvantageNormalization = Literal["standardize", "percentile", "none"]


class ReinforceSpec(AlgorithmSpec):
    """REINFORCE: Monte-Carlo policy gradient with an optional entropy bonus."""

    MEMORY_NAMES: ClassVar[tuple[str, ...] | None] = (
        "OnPolicyReplay",
        "OnPolicyBatchReplay",
        "OnPolicyCrossEntropy",
    )

    training_frequency: Frequency
    center_return: Flag = False
    entropy_coef_spec: VarSchedulerSpec | None = None
    policy_loss_coef: Number = 1.0
    normalize_advantages: AdvantageNormalization = "standardize"


class ActorCriticBaseSpec(AlgorithmSpec):
    """Keys shared by the actor-critic family (ActorCritic, PPO, SIL, PPOSIL)."""

    ROUTES_NET_KEYS: ClassVar[bool] = True
    REQUIRED_NET_KEYS: ClassVar[tuple[str, ...]] = ("shared", "use_same_optim")

    lam: Fraction | None = None
    num_step_returns: Count | None = None
    entropy_coef_spec: VarSchedulerSpec | None = None  # None -> coefficient 0 (D8)
    policy_loss_coef: Number = 1.0
    val_loss_coef: NonNegNumber = 1.0
    normalize_v_targets: Flag = False
    normalize_advantages: AdvantageNormalization = "standardize"


class ActorCriticSpec(ActorCriticBaseSpec):
    """A2C: GAE when ``lam`` is set, else n-step returns. ``lam`` must be given (null allowed)."""

    MEMORY_NAMES: ClassVar[tuple[str, ...] | None] = (
        "OnPolicyReplay",
        "OnPolicyBatchReplay",
        "OnPolicyCrossEntropy",
    )

    lam: Fraction | None
    training_frequency: Frequency | None = None

    @model_validator(mode="after")
    def _check_returns(self) -> "ActorCriticSpec":
        if self.lam is None and "num_step_returns" not in self.model_fields_set:
            raise ValueError(
                "num_step_returns is required when lam is null (null selects Monte-Carlo returns)"
            )
        return self


class PPOSpec(ActorCriticBaseSpec):
    """PPO with the clipped surrogate objective and GAE."""

    MEMORY_NAMES: ClassVar[tuple[str, ...] | None] = ("OnPolicyBatchReplay",)

    lam: Fraction
    clip_eps_spec: VarSchedulerSpec
    time_horizon: Count
    minibatch_size: Count = 4
    training_epoch: Count
    clip_vloss: Flag = False
    symlog: Flag = False


class SARSASpec(AlgorithmSpec):
    """SARSA: on-policy TD(0) on the action actually taken next."""

    MEMORY_NAMES: ClassVar[tuple[str, ...] | None] = ("OnPolicyBatchReplay",)

    training_frequency: Frequency


class VanillaDQNSpec(AlgorithmSpec):
    """The DQN family's keys: replay training cadence and iterations."""

    MEMORY_NAMES: ClassVar[tuple[str, ...] | None] = ("Replay", "PrioritizedReplay")
    FORBIDDEN_NET_KEYS: ClassVar[tuple[str, ...]] = ("update_type", "update_frequency", "polyak_coef")

    training_frequency: Frequency
    training_start_step: NonNegInt | None = None  # None -> memory.batch_size
    training_iter: Count = 1
    training_batch_iter: Count


class DQNSpec(VanillaDQNSpec):
    """DQN and DoubleDQN: a target net updated by ``replace`` or ``polyak``."""

    FORBIDDEN_NET_KEYS: ClassVar[tuple[str, ...]] = ()


class _SelfImitationKeys(SpecModel):
    """Keys of the self-imitation part shared by SIL and PPOSIL."""

    sil_policy_loss_coef: Number
    sil_val_loss_coef: NonNegNumber
    training_iter: Count = 1
    training_batch_iter: Count
    training_start_step: NonNegInt | None = None  # None -> memory.batch_size (D20)


class SILSpec(ActorCriticSpec, _SelfImitationKeys):
    """A2C plus self-imitation learning from a replay of past good transitions."""


class PPOSILSpec(PPOSpec, _SelfImitationKeys):
    """PPO plus self-imitation learning."""


class EntropyAnnealSpec(SpecModel):
    """Discrete SAC/CrossQ target entropy H̄ = ratio·log|A|, the ratio moving linearly from ``start_ratio`` to
    ``end_ratio`` (default: ``start_ratio``, constant) over ``frames`` env frames."""

    start_ratio: NonNegNumber = 0.6
    end_ratio: NonNegNumber | None = None
    frames: NonNegInt = 0


class SoftActorCriticSpec(AlgorithmSpec):
    """Soft Actor-Critic, continuous (tanh-squashed Normal) or discrete (exact expectation over actions)."""

    MEMORY_NAMES: ClassVar[tuple[str, ...] | None] = ("Replay", "PrioritizedReplay")

    training_frequency: Frequency
    training_start_step: NonNegInt | None = (
        None  # None -> max(1000, memory.batch_size); also the random warm-up frames
    )
    training_iter: Count | None = None  # None -> env.num_envs
    symlog: Flag = False
    policy_delay: Count = 1
    entropy_penalty_coef: NonNegNumber = 0.0
    log_alpha_min: Number = -5.0
    log_alpha_max: Number = 2.0
    alpha_lr: PosNumber | None = None
    fixed_alpha: NonNegNumber | None = None
    alpha_anneal_frames: NonNegInt = 0
    spectral_norm: Flag = False
    target_entropy: Literal["auto"] | Number = "auto"
    entropy_anneal: EntropyAnnealSpec = Field(default_factory=EntropyAnnealSpec)

    @model_validator(mode="after")
    def _check_alpha_range(self) -> "SoftActorCriticSpec":
        if self.log_alpha_min > self.log_alpha_max:
            raise ValueError(
                f"log_alpha_min ({self.log_alpha_min}) must not exceed log_alpha_max ({self.log_alpha_max})"
            )
        return self


class CrossQSpec(SoftActorCriticSpec):
    """CrossQ: SAC without target nets; critics from ``agent.critic_net`` (batch renormalization) when given."""


ALGORITHM_SPECS: dict[str, type[AlgorithmSpec]] = {
    "PPO": PPOSpec,
    "Reinforce": ReinforceSpec,
    "ActorCritic": ActorCriticSpec,
    "SIL": SILSpec,
    "PPOSIL": PPOSILSpec,
    "SARSA": SARSASpec,
    "VanillaDQN": VanillaDQNSpec,
    "DQNBase": VanillaDQNSpec,
    "DQN": DQNSpec,
    "DoubleDQN": DQNSpec,
    "SoftActorCritic": SoftActorCriticSpec,
    "CrossQ": CrossQSpec,
    "Random": RandomSpec,
}

# Renamed algorithm keys (D9): alias -> canonical. Both given with different values is an error.
ALGORITHM_KEY_ALIASES: dict[str, str] = {"clip_val_loss": "clip_vloss", "symlog_transform": "symlog"}


# --------------------------------------------------------------------------------------------------------------
# net-key routing of the actor-critic family


def route_net_spec(net_spec: dict[str, Any], role: Literal["actor", "critic"]) -> dict[str, Any]:
    """The net spec one network of the actor-critic family sees.

    A key containing ``actor_`` (``critic_``) goes only to the actor (critic), with that prefix removed, and wins
    over the plain key: ``actor_optim_spec`` becomes the actor's ``optim_spec``. ``actor_init_std`` and
    ``critic_init_std`` are exempt and stay as they are in both (D3). With ``use_same_optim: true`` the critic
    gets the actor's routed spec.

    >>> route_net_spec({"optim_spec": {"name": "Adam"}, "critic_optim_spec": {"name": "SGD"}}, "critic")
    {'optim_spec': {'name': 'SGD'}}
    """
    return route_net_spec_with_origins(net_spec, role)[0]


def route_net_spec_with_origins(net_spec: dict[str, Any], role: str) -> tuple[dict[str, Any], dict[str, str]]:
    """``route_net_spec`` plus a map from each routed key to the spec key it came from."""
    if role not in ("actor", "critic"):
        raise ValueError(f"role must be 'actor' or 'critic', got {role!r}")
    if role == "critic" and net_spec.get("use_same_optim") is True:
        return route_net_spec_with_origins(net_spec, "actor")
    plain: dict[str, Any] = {}
    routed: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for key, value in net_spec.items():
        own, other = f"{role}_", "critic_" if role == "actor" else "actor_"
        if key in ROUTING_EXEMPT_KEYS:
            plain[key] = value
        elif own in key:
            routed[key.replace(own, "", 1)] = value
            origin[key.replace(own, "", 1)] = key
        elif other not in key:
            plain[key] = value
    out = {**plain, **routed}
    return out, {k: origin.get(k, k) for k in out}


def unrouted_key(key: str) -> str:
    """The key a routed net sees for ``key`` (``actor_optim_spec`` -> ``optim_spec``)."""
    if key in ROUTING_EXEMPT_KEYS:
        return key
    for prefix in ("actor_", "critic_"):
        if prefix in key:
            return key.replace(prefix, "", 1)
    return key
