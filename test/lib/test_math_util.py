import math

import pytest
import torch
from torch import nn

from slm_lab.lib import math_util
from slm_lab.lib.math_util import (
    PercentileNormalizer,
    ReturnNormalizer,
    calc_gaes,
    calc_nstep_returns,
    calc_returns,
    explained_variance,
    polyak_update,
    standardize,
    symexp,
    symlog,
)

GAMMA, LAM = 0.9, 0.8


def t(rows: list[list[float]]) -> torch.Tensor:
    """(N, T) rows written per env copy -> the (T, N) time-major tensor the estimators take."""
    return torch.tensor(rows, dtype=torch.float32).T.contiguous()


@pytest.fixture
def batch() -> dict[str, torch.Tensor]:
    """T=4, N=2. Env 0 is truncated at t=2 (V of its final obs is 9.0, unlike the next stored state's V of 2.0);
    env 1 terminates at t=1 (its next value 7.0 must be ignored)."""
    return {
        "rewards": t([[1, 2, 3, 4], [1, 0, -1, 2]]),
        "values": t([[0.5, 1.0, 1.5, 2.0], [0.2, 0.4, 0.6, 0.8]]),
        "next_values": t([[1.0, 1.5, 9.0, 2.5], [0.4, 7.0, 0.8, 1.0]]),
        "terminateds": t([[0, 0, 0, 0], [0, 1, 0, 0]]).bool(),
        "truncateds": t([[0, 0, 1, 0], [0, 0, 0, 0]]).bool(),
    }


def gae(b: dict[str, torch.Tensor], lam: float) -> torch.Tensor:
    return calc_gaes(
        b["rewards"], b["values"], b["next_values"], b["terminateds"], b["truncateds"], GAMMA, lam
    )


def test_gae_hand_computed(batch):
    # deltas: env0 [1.4, 2.35, 9.6, 4.25], env1 [1.16, -0.4, -0.88, 2.1]; γλ = 0.72
    expected = t(
        [
            [1.4 + 0.72 * (2.35 + 0.72 * 9.6), 2.35 + 0.72 * 9.6, 9.6, 4.25],
            [1.16 + 0.72 * -0.4, -0.4, -0.88 + 0.72 * 2.1, 2.1],
        ]
    )
    advs = gae(batch, LAM)
    assert advs.shape == (4, 2)
    torch.testing.assert_close(advs, expected)
    # the truncated step bootstraps from V(final obs) = 9.0, not from the next stored state's value 2.0
    assert advs[2, 0].item() == pytest.approx(3 + 0.9 * 9.0 - 1.5)


def test_gae_lambda_zero_is_td_error(batch):
    deltas = t([[1.4, 2.35, 9.6, 4.25], [1.16, -0.4, -0.88, 2.1]])
    torch.testing.assert_close(gae(batch, 0.0), deltas)


def test_gae_lambda_one_is_bootstrapped_return_minus_value(batch):
    expected = t(
        [
            [1.4 + 0.9 * (2.35 + 0.9 * 9.6), 2.35 + 0.9 * 9.6, 9.6, 4.25],
            [1.16 + 0.9 * -0.4, -0.4, -0.88 + 0.9 * 2.1, 2.1],
        ]
    )
    advs = gae(batch, 1.0)
    torch.testing.assert_close(advs, expected)
    # identity: GAE(λ=1) + V equals the n-step return over the whole batch
    b = batch
    rets = calc_nstep_returns(b["rewards"], b["terminateds"], b["truncateds"], b["next_values"], GAMMA, n=4)
    torch.testing.assert_close(advs + b["values"], rets)


def test_gae_no_grad_and_1d():
    v = torch.tensor([1.0, 2.0], requires_grad=True)
    advs = calc_gaes(torch.ones(2), v, v * 2, torch.zeros(2), torch.zeros(2, dtype=torch.bool), 0.5, 0.5)
    assert not advs.requires_grad
    # δ = [1 + 0.5*2 - 1, 1 + 0.5*4 - 2] = [1, 1]; A1 = 1, A0 = 1 + 0.25 * 1
    torch.testing.assert_close(advs, torch.tensor([1.25, 1.0]))


def test_gae_shape_mismatch_asserts(batch):
    with pytest.raises(AssertionError, match="shape mismatch"):
        calc_gaes(
            batch["rewards"], batch["values"][:3], batch["next_values"], batch["terminateds"],
            batch["truncateds"], GAMMA, LAM,
        )  # fmt: skip


def test_monte_carlo_returns_by_hand(batch):
    b = batch
    no_critic = calc_returns(b["rewards"], b["terminateds"], b["truncateds"], GAMMA)
    expected = t([[1 + 0.9 * (2 + 0.9 * 3), 2 + 0.9 * 3, 3, 4], [1, 0, -1 + 0.9 * 2, 2]])
    torch.testing.assert_close(no_critic, expected)
    with_critic = calc_returns(
        b["rewards"], b["terminateds"], b["truncateds"], GAMMA, trunc_values=b["next_values"]
    )
    r2 = 3 + 0.9 * 9.0  # truncated: completed with V(final obs); no bootstrap at the batch end (R_3 = 4)
    expected = t([[1 + 0.9 * (2 + 0.9 * r2), 2 + 0.9 * r2, r2, 4], [1, 0, -1 + 0.9 * 2, 2]])
    torch.testing.assert_close(with_critic, expected)


def test_terminated_and_truncated_means_no_bootstrap():
    r = torch.tensor([[1.0]])
    flag = torch.tensor([[True]])
    nv = torch.tensor([[5.0]])
    assert calc_returns(r, flag, flag, GAMMA, trunc_values=nv).item() == 1.0
    assert calc_nstep_returns(r, flag, flag, nv, GAMMA, n=3).item() == 1.0
    assert calc_gaes(r, torch.zeros(1, 1), nv, flag, flag, GAMMA, LAM).item() == 1.0


@pytest.mark.parametrize(
    ("n", "env0", "env1"),
    [
        # n >= T: one recursion over the batch seeded with V(s'_{T-1})
        (4, [11.791, 11.99, 11.1, 6.25], [1.0, 0.0, 1.61, 2.9]),
        (10, [11.791, 11.99, 11.1, 6.25], [1.0, 0.0, 1.61, 2.9]),
        # n = 2: G_0 = r0 + γ r1 + γ² V(s'_1); env0 t=1 reaches the truncation and bootstraps V(final obs) there
        (2, [1 + 0.9 * 2 + 0.81 * 1.5, 2 + 0.9 * (3 + 0.9 * 9.0), 11.1, 6.25], [1.0, 0.0, 1.61, 2.9]),
        # n = 1: r + γ(1 - term) V(s')
        (1, [1.9, 3.35, 11.1, 6.25], [1.36, 0.0, -1 + 0.9 * 0.8, 2.9]),
    ],
)
def test_nstep_returns_by_hand(batch, n, env0, env1):
    b = batch
    rets = calc_nstep_returns(b["rewards"], b["terminateds"], b["truncateds"], b["next_values"], GAMMA, n)
    torch.testing.assert_close(rets, t([env0, env1]))


def brute_nstep(r, term, trunc, nv, gamma, n):
    """Definition: sum up to n rewards, stop at an episode end or the batch end, then bootstrap."""
    T, N = r.shape
    out = torch.zeros(T, N, dtype=torch.float64)
    for e in range(N):
        for s in range(T):
            g, disc = 0.0, 1.0
            for k in range(s, min(s + n, T)):
                g += disc * r[k, e].item()
                disc *= gamma
                if term[k, e]:
                    break
                if trunc[k, e] or k == min(s + n, T) - 1:
                    g += disc * nv[k, e].item()
                    break
            out[s, e] = g
    return out


@pytest.mark.parametrize("n", [1, 3, 7, 12])
def test_nstep_matches_definition_on_random_batch(n):
    gen = torch.Generator().manual_seed(0)
    T, N = 9, 3
    r = torch.randn(T, N, generator=gen, dtype=torch.float64)
    nv = torch.randn(T, N, generator=gen, dtype=torch.float64)
    term = torch.rand(T, N, generator=gen) < 0.15
    trunc = torch.rand(T, N, generator=gen) < 0.15
    got = calc_nstep_returns(r, term, trunc, nv, 0.95, n)
    torch.testing.assert_close(got, brute_nstep(r, term, trunc, nv, 0.95, n))


def test_cpu_scan_matches_torch_scan():
    gen = torch.Generator().manual_seed(1)
    x, c, init = (
        torch.randn(50, 4, generator=gen),
        torch.rand(50, 4, generator=gen),
        torch.randn(4, generator=gen),
    )
    fast = math_util._reverse_scan(x, c, init)  # numpy path on CPU
    slow = math_util._reverse_scan(x.to(torch.bfloat16), c.to(torch.bfloat16), init.to(torch.bfloat16))
    expected = torch.empty_like(x)
    nxt = init
    for i in range(49, -1, -1):
        nxt = expected[i] = x[i] + c[i] * nxt
    torch.testing.assert_close(fast, expected)
    torch.testing.assert_close(slow.float(), expected, atol=0.1, rtol=0.05)


def test_standardize():
    one = torch.tensor([3.0])
    assert standardize(one) is one
    x = torch.tensor([1.0, 2.0, 3.0, 10.0])
    z = standardize(x)
    assert z.mean().abs().item() < 1e-6
    assert z.std().item() == pytest.approx(1.0, abs=1e-5)
    assert standardize(torch.ones(5)).abs().max().item() == 0.0  # zero std: no division by zero


def test_symlog_symexp():
    x = torch.tensor([-100.0, -1.0, 0.0, 0.5, 1e4])
    # odd, log(1 + |x|) in magnitude: 0 stays 0, 1e4 shrinks to about 9.21
    expected = torch.tensor([-math.log(101.0), -math.log(2.0), 0.0, math.log(1.5), math.log(10_001.0)])
    torch.testing.assert_close(symlog(x), expected)
    torch.testing.assert_close(symexp(expected), x)
    torch.testing.assert_close(symexp(symlog(x)), x)


def test_explained_variance():
    y = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert explained_variance(y, y) == 1.0
    assert explained_variance(torch.full_like(y, 2.5), y) == pytest.approx(0.0)
    assert math.isnan(explained_variance(y, torch.ones(4)))


def test_polyak_update():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    target = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    net[1].running_mean.fill_(2.0)
    net[1].num_batches_tracked.fill_(7)
    before = [p.detach().clone() for p in target.parameters()]
    polyak_update(target, net, 0.25)
    for b, p_t, p in zip(before, target.parameters(), net.parameters(), strict=True):
        torch.testing.assert_close(p_t.detach(), 0.75 * b + 0.25 * p.detach())
    torch.testing.assert_close(target[1].running_mean, torch.full((4,), 0.5))
    assert target[1].num_batches_tracked.item() == 7
    polyak_update(target, net, 1.0)
    torch.testing.assert_close(target[0].weight, net[0].weight)


def test_return_normalizer_chan_merge_and_floor():
    norm = ReturnNormalizer()
    a, b = torch.arange(10.0) * 3, torch.linspace(-50, 80, 7)
    norm.update(a)
    norm.update(b)
    full = torch.cat([a, b]).double()
    assert norm.mean == pytest.approx(full.mean().item())
    assert norm.var == pytest.approx(full.var(unbiased=False).item())
    std = full.std(unbiased=False).item()  # about 28.6: well above the floor of 1
    assert norm.std == pytest.approx(std)
    out = norm.normalize(torch.tensor([1e6, -5.0]))
    assert out[0].item() == 10.0  # clamped
    assert out[1].item() == pytest.approx(-5.0 / std)
    # small returns are never scaled up: σ is floored at 1
    small = ReturnNormalizer()
    small.update(torch.tensor([0.1, 0.2, 0.3]))
    assert small.std == 1.0
    # state round trip
    other = ReturnNormalizer()
    other.load_state_dict(norm.state_dict())
    assert other.std == norm.std


def test_percentile_normalizer():
    norm = PercentileNormalizer()
    assert norm.scale == 1.0
    advs = torch.linspace(-100, 100, 201)  # P5 = -90, P95 = 90
    norm.update(advs)
    assert norm.p_low == pytest.approx(0.01 * -90, rel=1e-4)
    assert norm.p_high == pytest.approx(0.01 * 90, rel=1e-4)
    assert norm.scale == pytest.approx(1.8, rel=1e-4)  # max(1, 0.9 - (-0.9))
    for _ in range(500):
        norm.update(advs)
    assert norm.scale == pytest.approx(180 * (1 - 0.99**501), rel=1e-3)
    torch.testing.assert_close(norm.normalize(advs), advs / norm.scale)
    restored = PercentileNormalizer()
    restored.load_state_dict(norm.state_dict())
    assert restored.scale == norm.scale
