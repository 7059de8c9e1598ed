"""Pydantic models of the spec sections. Field names are exactly the spec keys; defaults live here only.

This module imports only pydantic (no torch, no gymnasium), so the CLI and spec checks stay light.

Components read their section through its model, e.g. ``PPOSpec.model_validate(spec["agent"]["algorithm"])``;
``slm_lab.spec.loader.get_spec_models`` does this for a whole spec. The spec itself stays a plain dict.

Name -> model tables, one per class family: ``ALGORITHM_SPECS``, ``MEMORY_SPECS``, ``NET_SPECS``. To add a class,
write its model (subclassing the family base) and add one row to the table; the loader picks it up for validation,
unknown-key warnings and int casting.

Unknown keys are ignored by the models (``extra="ignore"``); the loader warns about each one. ``EnvSpec`` and the
``{name, **kwargs}`` component specs (``loss_spec``, ``optim_spec``, ``lr_scheduler_spec``) keep their extra keys,
which are keyword arguments for gymnasium or torch.
"""

from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
    model_validator,
)

__all__ = [
    "AGENT_KEYS",
    "ALGORITHM_KEY_ALIASES",
    "ALGORITHM_SPECS",
    "MEMORY_SPECS",
    "NET_SPECS",
    "ROUTING_EXEMPT_KEYS",
    "TOP_LEVEL_KEYS",
    "ActorCriticBaseSpec",
    "ActorCriticSpec",
    "AgentSpec",
    "AlgorithmSpec",
    "ComponentSpec",
    "CrossQSpec",
    "DQNSpec",
    "DuelingMLPNetSpec",
    "EntropyAnnealSpec",
    "EnvSpec",
    "LabSpec",
    "MLPNetSpec",
    "MemorySpec",
    "MetaSpec",
    "NetSpec",
    "OnPolicyBatchReplaySpec",
    "OnPolicyCrossEntropySpec",
    "OnPolicyReplaySpec",
    "PPOSILSpec",
    "PPOSpec",
    "PrioritizedReplaySpec",
    "RandomSpec",
    "ReinforceSpec",
    "ReplaySpec",
    "SARSASpec",
    "SILSpec",
    "SoftActorCriticSpec",
    "SpecModel",
    "VanillaDQNSpec",
    "VarSchedulerSpec",
    "route_net_spec",
    "route_net_spec_with_origins",
    "unrouted_key",
]


def _not_a_bool(value: Any) -> Any:
    # pydantic would read true as 1: a boolean is not a number here
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    return value


# The value types of spec keys, with their valid ranges. Every number and boolean key uses one of these: a boolean
# given for a number (or a number or string for a boolean) is an error, and so are NaN and infinities.
Int = Annotated[int, BeforeValidator(_not_a_bool)]
Count = Annotated[Int, Field(ge=1)]  # how many: envs, sessions, epochs, layer widths, batch sizes
Frequency = Annotated[Int, Field(ge=1)]  # every how many frames, steps or episodes
NonNegInt = Annotated[Int, Field(ge=0)]  # frame and step offsets, indices
Number = Annotated[float, BeforeValidator(_not_a_bool)]
NonNegNumber = Annotated[Number, Field(ge=0.0)]
PosNumber = Annotated[Number, Field(gt=0.0)]
Fraction = Annotated[
    Number, Field(ge=0.0, le=1.0)
]  # discount factors, λ, exponents and coefficients in [0, 1]
# meta.random_seed: sessions add 100000·trial + 1000·session, and numpy and gymnasium take seeds below 2**32
Seed = Annotated[Int, Field(ge=0, le=2**31 - 1)]
Flag = StrictBool


TOP_LEVEL_KEYS = ("agent", "env", "meta", "search", "name")
AGENT_KEYS = ("name", "algorithm", "memory", "net", "critic_net")
ROUTING_EXEMPT_KEYS = ("actor_init_std", "critic_init_std")


class SpecModel(BaseModel):
    """Base of every spec model: unknown keys are dropped here (the loader warns about them)."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=(), allow_inf_nan=False)


class ComponentSpec(SpecModel):
    """A ``{name, **kwargs}`` spec for a torch class: the extra keys are its keyword arguments."""

    model_config = ConfigDict(extra="allow", protected_namespaces=(), allow_inf_nan=False)

    name: str

    @property
    def kwargs(self) -> dict[str, Any]:
        """Every key except ``name``, to pass to the class."""
        return dict(self.model_extra or {})


class VarSchedulerSpec(SpecModel):
    """A variable schedule over env frames. An absent ``end_val`` means ``start_val`` (D2)."""

    name: Literal["no_decay", "linear_decay", "rate_decay", "periodic_decay"]
    start_val: Number
    end_val: Number | None = None
    start_step: NonNegInt = 0
    end_step: NonNegInt = 0


# --------------------------------------------------------------------------------------------------------------
# agent.algorithm


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
# agent.memory


class MemorySpec(SpecModel):
    """Keys every memory reads."""

    name: str


class _SILReplayKeys(SpecModel):
    """On-policy memories also describe SIL's replay: its class and size (used by SIL and PPOSIL only)."""

    sil_replay_name: str | None = None
    batch_size: Count | None = None
    max_size: Count | None = None
    use_cer: Flag = False
    alpha: NonNegNumber | None = None
    epsilon: NonNegNumber | None = None
    beta: Fraction = 0.4
    beta_end: Fraction = 1.0


class OnPolicyBatchReplaySpec(MemorySpec, _SILReplayKeys):
    """Flat per-vector-step on-policy storage."""


class OnPolicyReplaySpec(MemorySpec, _SILReplayKeys):
    """Complete episodes, tracked per env copy; trains every ``training_frequency`` completed episodes."""


class OnPolicyCrossEntropySpec(OnPolicyReplaySpec):
    """As OnPolicyReplay, keeping only the episodes whose return is at least the ``cross_entropy`` quantile."""

    cross_entropy: Fraction = 1.0


class ReplaySpec(MemorySpec):
    """Circular replay of ``max_size`` transitions, sampled uniformly with replacement."""

    batch_size: Count
    max_size: Count
    use_cer: Flag = False
    obs_dtype: str | None = None  # storage dtype override; default: native (float64 -> float32), D5


class PrioritizedReplaySpec(ReplaySpec):
    """Proportional prioritized replay with importance-sampling weights (D31)."""

    alpha: NonNegNumber
    epsilon: NonNegNumber
    beta: Fraction = 0.4
    beta_end: Fraction = 1.0


MEMORY_SPECS: dict[str, type[MemorySpec]] = {
    "OnPolicyBatchReplay": OnPolicyBatchReplaySpec,
    "OnPolicyReplay": OnPolicyReplaySpec,
    "OnPolicyCrossEntropy": OnPolicyCrossEntropySpec,
    "Replay": ReplaySpec,
    "PrioritizedReplay": PrioritizedReplaySpec,
}


# --------------------------------------------------------------------------------------------------------------
# agent.net


class NetSpec(SpecModel):
    """Keys common to every net class."""

    type: str
    out_layer_activation: str | list[str | None] | None = None
    init_fn: str | None = None
    clip_grad_val: PosNumber | None = None
    loss_spec: ComponentSpec = Field(default_factory=lambda: ComponentSpec(name="MSELoss"))
    optim_spec: ComponentSpec = Field(default_factory=lambda: ComponentSpec(name="Adam"))
    lr_scheduler_spec: ComponentSpec | None = None
    update_type: Literal["replace", "polyak"] = "replace"
    # every how many frames a replace copies (frame % update_frequency < num_envs); a fraction copies every step
    update_frequency: Frequency | PosNumber = 1
    polyak_coef: Fraction = 0.0
    gpu: Flag | Literal["auto"] | None = "auto"
    log_std_init: Number | None = None
    actor_init_std: NonNegNumber | None = None
    critic_init_std: NonNegNumber | None = None
    shared: Flag | None = None
    use_same_optim: Flag | None = None


class MLPNetSpec(NetSpec):
    """A multi-layer perceptron body."""

    hid_layers: list[Count]
    hid_layers_activation: str
    layer_norm: Flag = False
    batch_norm: Flag = False
    batch_renorm: Flag | dict[str, Number] | None = (
        False  # clone: BatchRenorm1d after each hidden Linear (CrossQ)
    )


class DuelingMLPNetSpec(MLPNetSpec):
    """MLP body with a state-value head and an advantage head: Q = V + A − mean(A)."""


class ConvNetSpec(NetSpec):
    """Conv2d layers, flatten, fc layers, tails; input (B, C, H, W)."""

    # [out_channels, kernel, stride, padding, dilation] per layer
    conv_hid_layers: list[list[NonNegInt | list[NonNegInt]]]
    fc_hid_layers: list[Count] = Field(default_factory=list)
    hid_layers_activation: str
    normalize: Flag = False  # divide the input by 255 on the net's device
    # BatchNorm2d after every conv layer but the first (D17: reference default, logged)
    batch_norm: Flag = True
    layer_norm: Flag = False  # LayerNorm on the fc layers


class DuelingConvNetSpec(ConvNetSpec):
    """ConvNet body with a state-value head and an advantage head."""

    batch_norm: Flag = False  # D17: the dueling variant defaults to false


class RecurrentNetSpec(NetSpec):
    """Per-step fc layers, an RNN/GRU/LSTM over the last ``seq_len`` observations, tails (D16)."""

    cell_type: Literal["RNN", "GRU", "LSTM"] = "GRU"
    fc_hid_layers: list[Count] = Field(default_factory=list)
    hid_layers_activation: str
    rnn_hidden_size: Count
    rnn_num_layers: Count = 1
    bidirectional: Flag = False
    seq_len: Count
    layer_norm: Flag = False  # LayerNorm on the per-step fc layers


class TorchArcNetSpec(NetSpec):
    """A body from a TorchArc-format ``arc`` (inline ``modules`` + ``graph``) or ``arc_file`` (YAML/JSON path)."""

    arc: dict[str, Any] | None = None
    arc_file: str | None = None
    normalize: Flag = False
    hid_layers_activation: str = "relu"  # only chooses the init gain; the arc holds its own activations
    shared: Flag | None = False

    @model_validator(mode="after")
    def _one_arc(self) -> "TorchArcNetSpec":
        if (self.arc is None) == (self.arc_file is None):
            raise ValueError(
                "give exactly one of arc (an inline TorchArc dict) or arc_file (a YAML/JSON path)"
            )
        return self


NET_SPECS: dict[str, type[NetSpec]] = {
    "MLPNet": MLPNetSpec,
    "DuelingMLPNet": DuelingMLPNetSpec,
    "ConvNet": ConvNetSpec,
    "DuelingConvNet": DuelingConvNetSpec,
    "RecurrentNet": RecurrentNetSpec,
    "TorchArcNet": TorchArcNetSpec,
}


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


# --------------------------------------------------------------------------------------------------------------
# env, meta, agent, top level


class EnvSpec(SpecModel):
    """Keys the lab reads itself. Every other key is a keyword argument for ``gym.make``/``gym.make_vec``."""

    model_config = ConfigDict(extra="allow", protected_namespaces=(), allow_inf_nan=False)

    name: str
    num_envs: Count = 1
    max_frame: Count
    max_t: Count | None = None
    normalize_obs: Flag = False
    normalize_reward: Flag = False
    clip_obs: PosNumber | None = None
    clip_reward: PosNumber | tuple[Number, Number] | None = None
    reward_scale: Number = 1.0
    device: str | None = None

    @model_validator(mode="after")
    def _clip_defaults(self) -> "EnvSpec":
        # an absent clip defaults to 10 when the matching normaliser is on; an explicit null stays null
        if self.normalize_obs and "clip_obs" not in self.model_fields_set:
            self.clip_obs = 10.0
        if self.normalize_reward and "clip_reward" not in self.model_fields_set:
            self.clip_reward = 10.0
        return self

    @property
    def gym_kwargs(self) -> dict[str, Any]:
        """The keys that are not lab keys: keyword arguments for gymnasium."""
        return dict(self.model_extra or {})


class MetaSpec(SpecModel):
    """User keys of ``meta`` plus the runtime keys the loader adds and ``tick`` updates."""

    distributed: Literal[False, "synced", "shared"] = False
    log_frequency: Frequency = 10000
    eval_frequency: Frequency = 10000
    rigorous_eval: NonNegInt = 0
    max_session: Count
    max_trial: Count | None = None
    search_resources: dict[str, NonNegNumber] = Field(default_factory=lambda: {"cpu": 1, "gpu": 0})
    search_scheduler: dict[str, Any] | None = None
    # clone-only: how many times Ray retries a failing search trial before reporting it failed
    search_max_failures: NonNegInt = 1
    random_seed: Seed | None = None
    num_gpus: Any = None  # accepted and ignored (D9)
    # clone-only: TensorBoard event files in log/. null: dev mode only; true: also every session in train
    # mode; false: never, not even in dev mode
    tensorboard: Flag | None = None
    # runtime keys
    experiment: Int = -1
    trial: Int = -1
    session: Int = -1
    cuda_offset: NonNegInt = 0
    resume: Flag = False
    experiment_ts: str | None = None
    git_sha: str | None = None
    predir: str | None = None
    prepath: str | None = None
    info_prepath: str | None = None
    graph_prepath: str | None = None
    log_prepath: str | None = None
    model_prepath: str | None = None

    @field_validator("distributed", mode="before")
    @classmethod
    def _check_distributed(cls, value: Any) -> Any:
        # a missing or null key means off (D4); 0 is falsy in the reference, so it is off too
        if value is None or (value is False or (type(value) is int and value == 0)):
            return False
        if value in ("synced", "shared"):
            return value
        raise ValueError(f"expected false, 'synced' or 'shared', got {value!r}")


class AgentSpec(SpecModel):
    """The ``agent`` section: a label plus one dict per component (validated by their own models)."""

    name: str
    algorithm: dict[str, Any]
    memory: dict[str, Any]
    net: dict[str, Any]
    critic_net: dict[str, Any] | None = None


class LabSpec(SpecModel):
    """The top level of one spec (v5 flat format: ``agent`` and ``env`` are dicts, not lists)."""

    agent: dict[str, Any]
    env: dict[str, Any]
    meta: dict[str, Any]
    name: str
    search: dict[str, Any] | None = None
