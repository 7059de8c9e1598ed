"""Action types, the distributions (pdtypes) allowed for each, and construction from net outputs.

Shapes. Discrete pds (``Categorical``, ``Argmax``, ``GumbelSoftmax``) take logits (B, n): samples and log-probs are
(B,). Factored pds (``Normal``, ``Beta``, ``Gumbel``, ``LogNormal``, ``NormalTanh``, ``Bernoulli``,
``MultiCategorical``) keep the action dimension last, also for a single continuous action: samples, log-probs and
entropies are (B, A). ``MultivariateNormal`` has event shape (A,), so its log-prob is already (B,). Use
:func:`log_prob_sum` and :func:`entropy_sum` to get one number per sample for any pdtype.

Continuous pdparams are either one (B, 2) tensor ``[loc, log_scale]`` (single action, A = 1) or a pair
``[loc, log_scale]`` of (B, A) tensors. Loc/scale families use scale = exp(clamp(log_scale, −5, 2)); ``Beta`` uses
concentrations softplus(raw) + 1 ≥ 1 (unimodal, D18). Argument validation is off: this is on the per-step acting
path, and the parameters are valid by construction.
"""

import math
from collections.abc import Callable, Sequence

import gymnasium as gym
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import (
    Bernoulli,
    Beta,
    Distribution,
    Gumbel,
    LogNormal,
    MultivariateNormal,
    Normal,
    constraints,
)
from torch.distributions import Categorical as TorchCategorical
from torch.distributions.utils import lazy_property

from slm_lab.errors import LabError, SpecError

__all__ = [
    "ACTION_PDTYPES",
    "PDTYPES",
    "Argmax",
    "Categorical",
    "GumbelSoftmax",
    "MultiCategorical",
    "NormalTanh",
    "entropy_sum",
    "get_action_type",
    "log_prob_sum",
    "make_pd",
    "resolve_pdtype",
    "squashed_normal_sample",
]

LOG_SCALE_MIN, LOG_SCALE_MAX = -5.0, 2.0
_NO_SAMPLE_SHAPE = torch.Size()

# first entry = the default for that action type
ACTION_PDTYPES: dict[str, list[str]] = {
    "continuous": ["Normal", "Beta", "Gumbel", "LogNormal"],
    "multi_continuous": ["Normal", "MultivariateNormal", "NormalTanh"],
    "discrete": ["Categorical", "Argmax", "GumbelSoftmax"],
    "multi_discrete": ["MultiCategorical"],
    "multi_binary": ["Bernoulli"],
}


def get_action_type(space: gym.Space) -> str:
    """``discrete``, ``multi_discrete``, ``multi_binary``, ``continuous`` (Box of shape (1,)) or ``multi_continuous``."""
    if isinstance(space, gym.spaces.Discrete):
        return "discrete"
    if isinstance(space, gym.spaces.MultiDiscrete):
        return "multi_discrete"
    if isinstance(space, gym.spaces.MultiBinary):
        return "multi_binary"
    if isinstance(space, gym.spaces.Box):
        return "continuous" if tuple(space.shape) == (1,) else "multi_continuous"
    raise LabError(
        f"unsupported action space {space!r}; supported: Discrete, MultiDiscrete, MultiBinary, Box"
    )


def resolve_pdtype(action_type: str, pdtype: str | None) -> str:
    """The pdtype to use: ``default``/None -> the first allowed for ``action_type``; a disallowed one is an error."""
    if action_type not in ACTION_PDTYPES:
        raise LabError(f"unknown action type {action_type!r}; valid: {', '.join(ACTION_PDTYPES)}")
    allowed = ACTION_PDTYPES[action_type]
    if pdtype is None or pdtype == "default":
        return allowed[0]
    if pdtype not in allowed:
        raise SpecError(
            f"agent.algorithm.action_pdtype: {pdtype!r} is not allowed for a {action_type} action space; "
            f"allowed: {', '.join(allowed)} (or default)"
        )
    return pdtype


# ---------------------------------------------------------------------------------------------------------------
# Custom distributions
# ---------------------------------------------------------------------------------------------------------------


def _gumbel_like(x: Tensor, sample_shape: torch.Size) -> Tensor:
    """Standard Gumbel noise of shape sample_shape + x.shape: −log(E), E ~ Exp(1) (torch never samples E = 0)."""
    return torch.empty(sample_shape + x.shape, dtype=x.dtype, device=x.device).exponential_().log_().neg_()


class Categorical(TorchCategorical):
    """torch's Categorical over ``logits`` (B, n), built lazily and sampled with the Gumbel-max trick.

    Same distribution as ``torch.distributions.Categorical(logits=...)``, but construction stores the raw logits
    (the normalised ``logits`` and ``probs`` are computed only when a log-prob or entropy needs them) and
    ``sample`` is argmax(logits + Gumbel noise), which avoids softmax + multinomial on the acting path.
    """

    def __init__(self, logits: Tensor) -> None:
        assert logits.dim() >= 1, f"logits must be at least 1-D, got shape {tuple(logits.shape)}"
        self._param = logits
        self._num_events = logits.shape[-1]
        Distribution.__init__(self, logits.shape[:-1], validate_args=False)

    @lazy_property
    def logits(self) -> Tensor:  # type: ignore[override]
        return self._param - self._param.logsumexp(dim=-1, keepdim=True)

    @lazy_property
    def probs(self) -> Tensor:  # type: ignore[override]
        return torch.softmax(self._param, dim=-1)

    def sample(self, sample_shape: torch.Size | Sequence[int] = _NO_SAMPLE_SHAPE) -> Tensor:
        with torch.no_grad():
            return (self._param + _gumbel_like(self._param, torch.Size(sample_shape))).argmax(-1)

    def expand(self, batch_shape: torch.Size | Sequence[int], _instance: object = None) -> "Categorical":
        return type(self)(self._param.expand((*batch_shape, self._num_events)))


class Argmax(Categorical):
    """All probability on the arg-max of the logits (greedy acting); ties go to the first index.

    log_prob is 0 at the arg-max and −inf elsewhere; the entropy is 0.
    """

    @lazy_property
    def logits(self) -> Tensor:  # type: ignore[override]
        idx = self._param.argmax(-1, keepdim=True)
        return torch.full_like(self._param, -math.inf).scatter_(-1, idx, 0.0)

    @lazy_property
    def probs(self) -> Tensor:  # type: ignore[override]
        idx = self._param.argmax(-1, keepdim=True)
        return torch.zeros_like(self._param).scatter_(-1, idx, 1.0)

    def sample(self, sample_shape: torch.Size | Sequence[int] = _NO_SAMPLE_SHAPE) -> Tensor:
        greedy = self._param.argmax(-1)
        return greedy.expand(torch.Size(sample_shape) + greedy.shape)


class GumbelSoftmax(Categorical):
    """Categorical with a straight-through Gumbel-softmax relaxation (Jang et al. 2017), temperature 1.

    ``sample`` is the hard arg-max of Gumbel-perturbed logits (an exact categorical sample, as an index).
    ``rsample`` returns the hard one-hot in the forward pass with the soft relaxation's gradient. ``log_prob``
    accepts indices (B,) or one-hot vectors (B, n): Σ onehot · log_softmax(logits).
    """

    has_rsample = True
    temperature = 1.0

    def rsample(self, sample_shape: torch.Size | Sequence[int] = _NO_SAMPLE_SHAPE) -> Tensor:
        y = (self._param + _gumbel_like(self._param, torch.Size(sample_shape))) / self.temperature
        y_soft = torch.softmax(y, dim=-1)
        y_hard = torch.zeros_like(y_soft).scatter_(-1, y_soft.argmax(-1, keepdim=True), 1.0)
        return y_hard - y_soft.detach() + y_soft

    def log_prob(self, value: Tensor) -> Tensor:
        if value.dim() == self._param.dim() and value.shape[-1] == self._num_events:
            return (value * self.logits).sum(-1)
        return super().log_prob(value)


class MultiCategorical(Distribution):
    """Independent categoricals, one per sub-action of a MultiDiscrete space; quantities stacked to (B, K).

    ``logits`` is a list of K tensors (B, n_k) (sizes may differ), or one tensor (B, K, n).
    """

    arg_constraints: dict[str, constraints.Constraint] = {}  # noqa: RUF012 - torch's class-level convention

    def __init__(self, logits: Sequence[Tensor] | Tensor) -> None:
        parts = list(logits.unbind(-2)) if isinstance(logits, Tensor) else list(logits)
        assert parts, "MultiCategorical needs at least one sub-action"
        self.categoricals = [Categorical(p) for p in parts]
        batch_shape = torch.Size((*self.categoricals[0].batch_shape, len(parts)))
        super().__init__(batch_shape, validate_args=False)

    @property
    def support(self) -> constraints.Constraint:  # type: ignore[override]
        return constraints.integer_interval(0, max(c._num_events for c in self.categoricals) - 1)

    def sample(self, sample_shape: torch.Size | Sequence[int] = _NO_SAMPLE_SHAPE) -> Tensor:
        return torch.stack([c.sample(sample_shape) for c in self.categoricals], dim=-1)

    def log_prob(self, value: Tensor) -> Tensor:
        return torch.stack(
            [c.log_prob(v) for c, v in zip(self.categoricals, value.unbind(-1), strict=True)], dim=-1
        )

    def entropy(self) -> Tensor:
        return torch.stack([c.entropy() for c in self.categoricals], dim=-1)

    @property
    def mode(self) -> Tensor:
        return torch.stack([c._param.argmax(-1) for c in self.categoricals], dim=-1)


class NormalTanh(Distribution):
    """A Normal over u squashed to a = tanh(u) ∈ (−1, 1), with the change-of-variables correction (D25).

    log π(a) = log N(u) − 2(log 2 − u − softplus(−2u)), the stable form of log(1 − tanh²u). A sample remembers its
    u, so ``log_prob`` of the tensor just returned by ``(r)sample`` is exact; other actions are inverted with a
    clamped atanh. ``entropy`` returns the entropy of the pre-squash Normal, an upper bound of the squashed one
    (tanh contracts volume) and the usual surrogate, since the squashed entropy has no closed form.
    """

    arg_constraints: dict[str, constraints.Constraint] = {}  # noqa: RUF012 - torch's class-level convention
    support = constraints.interval(-1.0, 1.0)
    has_rsample = True
    _EPS = 1e-6

    def __init__(self, loc: Tensor, scale: Tensor) -> None:
        self.base = Normal(loc, scale, validate_args=False)
        self._cache: tuple[Tensor, Tensor] | None = None
        super().__init__(self.base.batch_shape, validate_args=False)

    def rsample(self, sample_shape: torch.Size | Sequence[int] = _NO_SAMPLE_SHAPE) -> Tensor:
        u = self.base.rsample(torch.Size(sample_shape))
        a = torch.tanh(u)
        self._cache = (a, u)
        return a

    def sample(self, sample_shape: torch.Size | Sequence[int] = _NO_SAMPLE_SHAPE) -> Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._cache is not None and value is self._cache[0]:
            u = self._cache[1]
        else:
            u = torch.atanh(value.clamp(-1.0 + self._EPS, 1.0 - self._EPS))
        return self.base.log_prob(u) - 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))

    def entropy(self) -> Tensor:
        return self.base.entropy()

    @property
    def mean(self) -> Tensor:
        """tanh of the Normal's mean (the deterministic action; not the exact mean of the squashed variable)."""
        return torch.tanh(self.base.loc)

    @property
    def mode(self) -> Tensor:
        return torch.tanh(self.base.loc)


# ---------------------------------------------------------------------------------------------------------------
# Construction from net outputs
# ---------------------------------------------------------------------------------------------------------------

PdParam = Tensor | Sequence[Tensor]


def _two_params(pdparam: PdParam, pdtype: str) -> tuple[Tensor, Tensor]:
    """(B, 2) tensor -> two (B, 1) tensors; a pair of (B, A) tensors -> that pair."""
    if isinstance(pdparam, Tensor):
        if pdparam.shape[-1] != 2:
            raise ValueError(
                f"{pdtype} expects a (B, 2) tensor [loc, log_scale] or a pair of (B, A) tensors, "
                f"got a tensor of shape {tuple(pdparam.shape)}"
            )
        return pdparam[..., 0:1], pdparam[..., 1:2]
    if len(pdparam) != 2:
        raise ValueError(f"{pdtype} expects 2 parameter tensors, got {len(pdparam)}")
    first, second = pdparam
    assert first.dim() >= 2, (
        f"{pdtype} parameters must be (B, A) with the action dim last, got {tuple(first.shape)}"
    )
    return first, second


def _loc_scale(pdparam: PdParam, pdtype: str) -> tuple[Tensor, Tensor]:
    loc, log_scale = _two_params(pdparam, pdtype)
    return loc, torch.exp(torch.clamp(log_scale, LOG_SCALE_MIN, LOG_SCALE_MAX))


def _logits(pdparam: PdParam, pdtype: str) -> Tensor:
    if not isinstance(pdparam, Tensor):
        raise ValueError(f"{pdtype} expects one logits tensor, got {type(pdparam).__name__}")
    return pdparam


def _make_normal(p: PdParam) -> Distribution:
    return Normal(*_loc_scale(p, "Normal"), validate_args=False)


def _make_lognormal(p: PdParam) -> Distribution:
    return LogNormal(*_loc_scale(p, "LogNormal"), validate_args=False)


def _make_gumbel(p: PdParam) -> Distribution:
    return Gumbel(*_loc_scale(p, "Gumbel"), validate_args=False)


def _make_normal_tanh(p: PdParam) -> Distribution:
    return NormalTanh(*_loc_scale(p, "NormalTanh"))


def _make_mvn(p: PdParam) -> Distribution:
    loc, scale = _loc_scale(p, "MultivariateNormal")
    loc, scale = torch.broadcast_tensors(loc, scale)
    return MultivariateNormal(loc, scale_tril=torch.diag_embed(scale), validate_args=False)


def _make_beta(p: PdParam) -> Distribution:
    raw1, raw0 = _two_params(p, "Beta")
    return Beta(F.softplus(raw1) + 1.0, F.softplus(raw0) + 1.0, validate_args=False)


PDTYPES: dict[str, Callable[[PdParam], Distribution]] = {
    "Categorical": lambda p: Categorical(_logits(p, "Categorical")),
    "Argmax": lambda p: Argmax(_logits(p, "Argmax")),
    "GumbelSoftmax": lambda p: GumbelSoftmax(_logits(p, "GumbelSoftmax")),
    "MultiCategorical": MultiCategorical,
    "Bernoulli": lambda p: Bernoulli(logits=_logits(p, "Bernoulli"), validate_args=False),
    "Normal": _make_normal,
    "Beta": _make_beta,
    "Gumbel": _make_gumbel,
    "LogNormal": _make_lognormal,
    "MultivariateNormal": _make_mvn,
    "NormalTanh": _make_normal_tanh,
}

# pds whose log_prob/entropy keep the action dim last, to be summed for one value per sample
_FACTORED = (Normal, Beta, Gumbel, LogNormal, NormalTanh, Bernoulli, MultiCategorical)


def make_pd(pdtype: str, pdparam: PdParam) -> Distribution:
    """Build the action distribution ``pdtype`` from the policy net's output ``pdparam`` (see module docstring)."""
    try:
        build = PDTYPES[pdtype]
    except KeyError:
        raise SpecError(
            f"agent.algorithm.action_pdtype: unknown pdtype {pdtype!r}; valid: {', '.join(PDTYPES)}"
        ) from None
    return build(pdparam)


def _match_shape(pd: Distribution, actions: Tensor) -> Tensor:
    """Reshape e.g. (B, 1) actions to a Categorical's (B,) (or (B,) to a Normal's (B, 1)) so that log_prob cannot
    silently broadcast to (B, B)."""
    expected = pd.batch_shape + pd.event_shape
    if actions.shape != expected and actions.numel() == expected.numel():
        return actions.reshape(expected)
    return actions


def log_prob_sum(pd: Distribution, actions: Tensor) -> Tensor:
    """log π(a|s), one value per sample: summed over the action dim for factored pds. Returns (B,)."""
    log_prob = pd.log_prob(_match_shape(pd, actions))
    return log_prob.sum(-1) if isinstance(pd, _FACTORED) else log_prob


def entropy_sum(pd: Distribution) -> Tensor:
    """H[π(·|s)], one value per sample: summed over the action dim for factored pds. Returns (B,)."""
    entropy = pd.entropy()
    return entropy.sum(-1) if isinstance(pd, _FACTORED) else entropy


# SAC's reparameterised tanh-Normal sample --------------------------------------------------------------------------
_LOG2 = math.log(2.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def squashed_normal_sample(loc: torch.Tensor, log_std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A reparameterised sample a = tanh(u), u = loc + σ·ε, and its log-density, summed over the action dim.

    log π(a) = Σ log N(u; loc, σ) − Σ 2(log 2 − u − softplus(−2u)); the second term is log(1 − tanh²u) in a form
    that stays finite when |u| is large (tanh saturates to ±1 and 1 − tanh²u underflows to 0). log N(u) is written
    with ε directly, −ε²/2 − log σ − log(2π)/2, which is also its exact total derivative through u. log σ is clamped
    to the lab's [LOG_SCALE_MIN, LOG_SCALE_MAX].
    """
    log_std = log_std.clamp(LOG_SCALE_MIN, LOG_SCALE_MAX)
    eps = torch.randn_like(loc)
    u = loc + log_std.exp() * eps
    log_det = 2.0 * (_LOG2 - u - F.softplus(-2.0 * u))
    log_prob = (-0.5 * eps.square() - log_std - _HALF_LOG_2PI - log_det).sum(-1)
    return torch.tanh(u), log_prob
