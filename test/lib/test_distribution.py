import math

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import distributions as D

from slm_lab.errors import SpecError
from slm_lab.lib.distribution import (
    ACTION_PDTYPES,
    Argmax,
    Categorical,
    GumbelSoftmax,
    MultiCategorical,
    NormalTanh,
    entropy_sum,
    get_action_type,
    log_prob_sum,
    make_pd,
    resolve_pdtype,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_action_types():
    assert get_action_type(gym.spaces.Discrete(3)) == "discrete"
    assert get_action_type(gym.spaces.MultiDiscrete([3, 2])) == "multi_discrete"
    assert get_action_type(gym.spaces.MultiBinary(4)) == "multi_binary"
    assert get_action_type(gym.spaces.Box(-1, 1, (1,))) == "continuous"
    assert get_action_type(gym.spaces.Box(-1, 1, (3,))) == "multi_continuous"
    assert get_action_type(gym.spaces.Box(-1, 1, (2, 2))) == "multi_continuous"


def test_resolve_pdtype():
    assert resolve_pdtype("discrete", None) == "Categorical"
    assert resolve_pdtype("discrete", "default") == "Categorical"
    assert resolve_pdtype("continuous", None) == "Normal"
    assert resolve_pdtype("discrete", "Argmax") == "Argmax"
    with pytest.raises(
        SpecError, match=r"agent\.algorithm\.action_pdtype.*Normal.*Categorical, Argmax, GumbelSoftmax"
    ):
        resolve_pdtype("discrete", "Normal")
    with pytest.raises(SpecError, match="action_pdtype"):
        make_pd("Poisson", torch.zeros(2, 2))


PDPARAMS = {
    "discrete": lambda: torch.randn(2, 3),
    "multi_discrete": lambda: [torch.randn(2, 3), torch.randn(2, 2)],
    "multi_binary": lambda: torch.randn(2, 3),
    "continuous": lambda: torch.randn(2, 2),
    "multi_continuous": lambda: [torch.randn(2, 3), torch.randn(2, 3)],
}


@pytest.mark.parametrize("action_type", list(ACTION_PDTYPES))
def test_every_allowed_pdtype_builds_with_per_sample_outputs(action_type):
    for name in ACTION_PDTYPES[action_type]:
        assert resolve_pdtype(action_type, name) == name
        pd = make_pd(name, PDPARAMS[action_type]())
        actions = pd.sample()
        assert actions.shape[0] == 2
        assert log_prob_sum(pd, actions).shape == (2,), name
        assert entropy_sum(pd).shape == (2,), name


def test_categorical_matches_torch():
    logits = torch.randn(4, 3)
    pd = make_pd("Categorical", logits)
    ref = D.Categorical(logits=logits)
    assert isinstance(pd, Categorical) and isinstance(pd, D.Categorical)
    actions = torch.tensor([0, 2, 1, 2])
    torch.testing.assert_close(pd.log_prob(actions), ref.log_prob(actions))
    torch.testing.assert_close(pd.entropy(), ref.entropy())
    torch.testing.assert_close(pd.probs, ref.probs)
    assert pd.sample().shape == (4,)
    assert pd.sample((5,)).shape == (5, 4)


def test_categorical_sample_frequencies():
    logits = torch.tensor([0.0, 1.0, 2.0, -math.inf])
    samples = make_pd("Categorical", logits).sample((40000,))
    freq = torch.bincount(samples, minlength=4).float() / 40000
    torch.testing.assert_close(freq, torch.softmax(logits, -1), atol=0.01, rtol=0)
    assert freq[3] == 0.0  # masked action never sampled


def test_argmax():
    logits = torch.tensor([[0.1, 3.0, -1.0], [5.0, 0.0, 5.0]])
    pd = make_pd("Argmax", logits)
    assert isinstance(pd, Argmax)
    assert pd.sample().tolist() == [1, 0]  # ties go to the first index
    assert pd.sample((3,)).shape == (3, 2)
    assert pd.log_prob(torch.tensor([1, 0])).tolist() == [0.0, 0.0]
    assert pd.log_prob(torch.tensor([0, 2])).tolist() == [-math.inf, -math.inf]
    assert pd.entropy().tolist() == [0.0, 0.0]
    assert pd.probs.tolist() == [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]


def test_gumbel_softmax():
    logits = torch.randn(5, 4, requires_grad=True)
    pd = make_pd("GumbelSoftmax", logits)
    assert isinstance(pd, GumbelSoftmax)
    ref = D.Categorical(logits=logits)
    idx = pd.sample()
    assert idx.shape == (5,)
    onehot = F.one_hot(idx, 4).float()
    torch.testing.assert_close(pd.log_prob(idx), ref.log_prob(idx))
    torch.testing.assert_close(pd.log_prob(onehot), ref.log_prob(idx))
    y = pd.rsample()
    assert torch.all(y.detach().sum(-1) == 1.0) and torch.all((y.detach() == 0) | (y.detach() == 1))
    (y * torch.arange(4.0)).sum().backward()  # straight-through: the hard sample carries a gradient
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_normal_single_action_from_b2_tensor():
    pdparam = torch.tensor([[0.5, math.log(2.0)], [-1.0, 10.0]])  # 10 is clamped to log-scale 2
    pd = make_pd("Normal", pdparam)
    assert pd.batch_shape == (2, 1)
    torch.testing.assert_close(pd.scale, torch.tensor([[2.0], [math.exp(2.0)]]))
    actions = torch.tensor([[0.3], [0.0]])
    ref = D.Normal(torch.tensor([0.5, -1.0]), torch.tensor([2.0, math.exp(2.0)]))
    torch.testing.assert_close(log_prob_sum(pd, actions), ref.log_prob(actions.squeeze(-1)))
    # actions given flat (B,) must not broadcast to (B, B)
    assert log_prob_sum(pd, actions.squeeze(-1)).shape == (2,)
    torch.testing.assert_close(entropy_sum(pd), ref.entropy())
    assert pd.sample().shape == (2, 1)


def test_normal_multi_action_sums_over_dims_and_matches_mvn():
    loc, log_std = torch.randn(3, 2), torch.randn(3, 2) * 0.5
    actions = torch.randn(3, 2)
    pd = make_pd("Normal", [loc, log_std])
    mvn = make_pd("MultivariateNormal", [loc, log_std])
    ref = D.Independent(D.Normal(loc, log_std.exp()), 1)
    torch.testing.assert_close(log_prob_sum(pd, actions), ref.log_prob(actions))
    torch.testing.assert_close(log_prob_sum(mvn, actions), ref.log_prob(actions))
    torch.testing.assert_close(entropy_sum(pd), ref.entropy())
    torch.testing.assert_close(entropy_sum(mvn), ref.entropy())
    assert pd.sample().shape == (3, 2) and mvn.sample().shape == (3, 2)


def test_beta_concentrations():
    raw = torch.tensor([[0.3, -2.0]])
    pd = make_pd("Beta", raw)
    c1, c0 = F.softplus(torch.tensor(0.3)) + 1, F.softplus(torch.tensor(-2.0)) + 1
    torch.testing.assert_close(pd.concentration1, c1.reshape(1, 1))
    torch.testing.assert_close(pd.concentration0, c0.reshape(1, 1))
    a = torch.tensor([[0.25]])
    # closed-form Beta density
    log_b = math.lgamma(c1) + math.lgamma(c0) - math.lgamma(c1 + c0)
    expected = (c1 - 1) * math.log(0.25) + (c0 - 1) * math.log(0.75) - log_b
    assert log_prob_sum(pd, a).item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.all((pd.sample() > 0) & (pd.sample() < 1))


@pytest.mark.parametrize(("name", "cls"), [("Gumbel", D.Gumbel), ("LogNormal", D.LogNormal)])
def test_other_loc_scale_families(name, cls):
    loc, log_std = torch.randn(4, 1), torch.randn(4, 1) * 0.3
    pd = make_pd(name, torch.cat([loc, log_std], dim=-1))
    ref = cls(loc, log_std.exp())
    x = torch.rand(4, 1) + 0.5
    torch.testing.assert_close(log_prob_sum(pd, x), ref.log_prob(x).squeeze(-1))
    torch.testing.assert_close(entropy_sum(pd), ref.entropy().squeeze(-1))


def test_normal_tanh():
    loc = torch.tensor([[0.2, -0.5]], requires_grad=True)
    log_std = torch.tensor([[-0.3, 0.1]])
    pd = make_pd("NormalTanh", [loc, log_std])
    assert isinstance(pd, NormalTanh)
    a = pd.rsample()
    assert torch.all(a.abs() < 1)
    u = pd._cache[1]
    # closed form: log N(u) − log(1 − tanh(u)²)
    expected = D.Normal(loc, log_std.exp()).log_prob(u) - torch.log(1 - torch.tanh(u) ** 2)
    torch.testing.assert_close(pd.log_prob(a), expected)
    # a fresh (uncached) action of equal value inverts through atanh to the same log-prob
    torch.testing.assert_close(pd.log_prob(a.detach().clone()), expected, atol=1e-4, rtol=1e-4)
    log_prob_sum(pd, a).sum().backward()
    assert loc.grad is not None
    torch.testing.assert_close(entropy_sum(pd), D.Normal(loc, log_std.exp()).entropy().sum(-1))
    assert torch.isfinite(pd.log_prob(torch.tensor([[1.0, -1.0]]))).all()  # boundary actions stay finite


def test_multi_categorical():
    logits = [torch.randn(2, 3), torch.randn(2, 2)]
    pd = make_pd("MultiCategorical", logits)
    assert isinstance(pd, MultiCategorical)
    actions = torch.tensor([[2, 1], [0, 0]])
    refs = [D.Categorical(logits=lg) for lg in logits]
    expected = refs[0].log_prob(actions[:, 0]) + refs[1].log_prob(actions[:, 1])
    torch.testing.assert_close(log_prob_sum(pd, actions), expected)
    torch.testing.assert_close(entropy_sum(pd), refs[0].entropy() + refs[1].entropy())
    sample = pd.sample()
    assert sample.shape == (2, 2) and sample[:, 0].max() < 3 and sample[:, 1].max() < 2


def test_bernoulli():
    logits = torch.randn(3, 4)
    pd = make_pd("Bernoulli", logits)
    actions = (torch.rand(3, 4) > 0.5).float()
    ref = D.Bernoulli(logits=logits)
    torch.testing.assert_close(log_prob_sum(pd, actions), ref.log_prob(actions).sum(-1))
    torch.testing.assert_close(entropy_sum(pd), ref.entropy().sum(-1))


def test_discrete_log_prob_sum_reshapes_column_actions():
    logits = torch.randn(4, 3)
    pd = make_pd("Categorical", logits)
    actions = torch.tensor([[0.0], [1.0], [2.0], [1.0]])  # (B, 1) floats as a memory may store them
    out = log_prob_sum(pd, actions)
    assert out.shape == (4,)
    torch.testing.assert_close(out, D.Categorical(logits=logits).log_prob(actions.squeeze(-1).long()))


def test_bad_pdparams():
    with pytest.raises(ValueError, match="B, 2"):
        make_pd("Normal", torch.zeros(4, 3))
    with pytest.raises(ValueError, match="one logits tensor"):
        make_pd("Categorical", [torch.zeros(2, 2)])


def test_sample_is_reproducible_with_seed():
    logits = torch.randn(8, 5)
    torch.manual_seed(3)
    first = make_pd("Categorical", logits).sample((10,))
    torch.manual_seed(3)
    second = make_pd("Categorical", logits).sample((10,))
    assert torch.equal(first, second)
    assert np.unique(first.numpy()).size > 1
