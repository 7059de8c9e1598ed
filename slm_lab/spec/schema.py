"""Pydantic models of the spec sections. Field names are exactly the spec keys; defaults live in the models only.

This module holds the memory, net, env, meta, agent and top-level models. It re-exports the value types and base
models of ``slm_lab.spec.schema_base`` and the algorithm models, their table and the net-key routing of
``slm_lab.spec.schema_algorithm``, so every model is imported from here.

These modules import only pydantic (no torch, no gymnasium), so the CLI and spec checks stay light.

Components read their section through its model, e.g. ``PPOSpec.model_validate(spec["agent"]["algorithm"])``;
``slm_lab.spec.loader.get_spec_models`` does this for a whole spec. The spec itself stays a plain dict.

Name -> model tables, one per class family: ``ALGORITHM_SPECS``, ``MEMORY_SPECS``, ``NET_SPECS``. To add a class,
write its model (subclassing the family base) and add one row to the table; the loader picks it up for validation,
unknown-key warnings and int casting.

Unknown keys are ignored by the models (``extra="ignore"``); the loader warns about each one. ``EnvSpec`` and the
``{name, **kwargs}`` component specs (``loss_spec``, ``optim_spec``, ``lr_scheduler_spec``) keep their extra keys,
which are keyword arguments for gymnasium or torch.
"""

from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from slm_lab.spec.schema_algorithm import (
    ALGORITHM_KEY_ALIASES,
    ALGORITHM_SPECS,
    ROUTING_EXEMPT_KEYS,
    ActorCriticBaseSpec,
    ActorCriticSpec,
    AlgorithmSpec,
    CrossQSpec,
    DQNSpec,
    EntropyAnnealSpec,
    PPOSILSpec,
    PPOSpec,
    RandomSpec,
    ReinforceSpec,
    SARSASpec,
    SILSpec,
    SoftActorCriticSpec,
    VanillaDQNSpec,
    route_net_spec,
    route_net_spec_with_origins,
    unrouted_key,
)
from slm_lab.spec.schema_base import (
    ComponentSpec,
    Count,
    Flag,
    Fraction,
    Frequency,
    Int,
    NonNegInt,
    NonNegNumber,
    Number,
    PosNumber,
    Seed,
    SpecModel,
    VarSchedulerSpec,
)

__all__ = [
    "AGENT_KEYS",
    "ALGORITHM_KEY_ALIASES",
    "ALGORITHM_SPECS",
    "DEFAULT_CLIP",
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


TOP_LEVEL_KEYS = ("agent", "env", "meta", "search", "name")
AGENT_KEYS = ("name", "algorithm", "memory", "net", "critic_net")


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
# --------------------------------------------------------------------------------------------------------------
# env, meta, agent, top level


# clip_obs / clip_reward when the matching normaliser is on and the key is absent
DEFAULT_CLIP = 10.0


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
            self.clip_obs = DEFAULT_CLIP
        if self.normalize_reward and "clip_reward" not in self.model_fields_set:
            self.clip_reward = DEFAULT_CLIP
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
