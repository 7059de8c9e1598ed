"""BatchRenorm1d against a hand computation; its warm-up, eval mode and lazy form; the MLPNet batch_renorm key."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from slm_lab.agent.net import NETS, BatchRenorm1d, LazyBatchRenorm1d
from slm_lab.errors import SpecError

X = np.array([[1.0, -2.0, 0.5], [3.0, 0.0, 0.5], [2.0, 4.0, 1.5], [6.0, 2.0, 2.5]])


def renorm_by_hand(
    x: np.ndarray, mean: np.ndarray, var: np.ndarray, eps: float, r_max: float, d_max: float
) -> np.ndarray:
    mu_b, var_b = x.mean(0), x.var(0)  # the biased batch variance
    sigma_b, sigma = np.sqrt(var_b + eps), np.sqrt(var + eps)
    r = np.clip(sigma_b / sigma, 1 / r_max, r_max)
    d = np.clip((mu_b - mean) / sigma, -d_max, d_max)
    return (x - mu_b) / sigma_b * r + d


def test_training_forward_and_running_statistics_match_a_hand_computation() -> None:
    layer = BatchRenorm1d(3, eps=1e-3, momentum=0.1, warmup_steps=0)  # no warm-up: r_max = 3, d_max = 5
    mean, var = np.array([0.5, 3.0, -20.0]), np.array([0.25, 16.0, 1.0])
    layer.running_mean.copy_(torch.tensor(mean))
    layer.running_var.copy_(torch.tensor(var))
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([2.0, 1.0, 0.5]))
        layer.bias.copy_(torch.tensor([0.0, 1.0, -1.0]))
    y = layer(torch.tensor(X, dtype=torch.float32))
    expected = renorm_by_hand(X, mean, var, 1e-3, 3.0, 5.0) * [2.0, 1.0, 0.5] + [0.0, 1.0, -1.0]
    np.testing.assert_allclose(y.detach().numpy(), expected, rtol=1e-5, atol=1e-5)
    # feature 0: r is clamped at r_max = 3; feature 2: d is clamped at d_max = 5
    assert np.sqrt(X.var(0)[0] + 1e-3) / np.sqrt(0.25 + 1e-3) > 3.0
    assert (X.mean(0)[2] - (-20.0)) / 1.0 > 5.0
    np.testing.assert_allclose(layer.running_mean.numpy(), 0.9 * mean + 0.1 * X.mean(0), rtol=1e-6)
    np.testing.assert_allclose(layer.running_var.numpy(), 0.9 * var + 0.1 * X.var(0), rtol=1e-6)
    assert int(layer.num_batches_tracked) == 1


def test_gradients_do_not_flow_through_r_and_d() -> None:
    """With r and d treated as constants, d(Σ x̂)/dx is the plain batch-norm gradient scaled by r."""
    layer = BatchRenorm1d(3, warmup_steps=0)
    x = torch.tensor(X, dtype=torch.float32, requires_grad=True)
    weights = torch.randn(4, 3)
    (layer(x) * weights).sum().backward()
    x_ref = torch.tensor(X, dtype=torch.float32, requires_grad=True)
    bn = F.batch_norm(x_ref, None, None, training=True, eps=layer.eps)
    # r = σ_B/σ with the fresh running variance 1: X's batch variances 3.5, 5 and 0.6875 give r ≈ 1.87, 2.24 and
    # 0.83, inside [1/3, 3], so no limit applies
    r = torch.sqrt((torch.tensor([3.5, 5.0, 0.6875]) + layer.eps) / (1 + layer.eps))
    (bn * r * weights).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-4, atol=1e-5)


def test_warmup_starts_as_batch_norm_and_widens_the_limits_linearly() -> None:
    layer = BatchRenorm1d(3, eps=1e-3, warmup_steps=10)
    layer.running_mean.fill_(100.0)  # far from the batch: without warm-up, d would clamp at 5
    y = layer(torch.tensor(X, dtype=torch.float32))
    plain_bn = (X - X.mean(0)) / np.sqrt(X.var(0) + 1e-3)
    np.testing.assert_allclose(y.detach().numpy(), plain_bn, rtol=1e-5, atol=1e-5)
    assert layer.limits() == pytest.approx((1.2, 0.5))  # after 1 of 10 steps: r_max 1 → 3, d_max 0 → 5
    layer.num_batches_tracked.fill_(10)
    assert layer.limits() == pytest.approx((3.0, 5.0))
    layer.num_batches_tracked.fill_(50)
    assert layer.limits() == pytest.approx((3.0, 5.0))


def test_eval_mode_uses_the_running_statistics_and_leaves_them_alone() -> None:
    layer = BatchRenorm1d(3)
    layer.running_mean.copy_(torch.tensor([1.0, 2.0, 3.0]))
    layer.running_var.copy_(torch.tensor([4.0, 1.0, 0.25]))
    layer.eval()
    y = layer(torch.tensor(X, dtype=torch.float32))
    expected = (X - [1.0, 2.0, 3.0]) / np.sqrt(np.array([4.0, 1.0, 0.25]) + layer.eps)
    np.testing.assert_allclose(y.detach().numpy(), expected, rtol=1e-5)
    assert torch.equal(layer.running_mean, torch.tensor([1.0, 2.0, 3.0]))
    assert int(layer.num_batches_tracked) == 0


def test_lazy_batch_renorm_reads_its_width_from_the_first_input() -> None:
    layer = LazyBatchRenorm1d(momentum=0.1, warmup_steps=0)
    y = layer(torch.tensor(X, dtype=torch.float32))
    assert isinstance(layer, BatchRenorm1d) and layer.num_features == 3
    assert layer.weight.shape == (3,) and y.shape == (4, 3)
    np.testing.assert_allclose(layer.running_mean.numpy(), 0.1 * X.mean(0), rtol=1e-6)


def test_mlp_batch_renorm_key() -> None:
    spec = {"type": "MLPNet", "hid_layers": [8, 8], "hid_layers_activation": "relu",
            "batch_renorm": {"warmup_steps": 100, "momentum": 0.05}}  # fmt: skip
    net = NETS.get("MLPNet")(spec, 4, 1)
    layers = [m for m in net.modules() if isinstance(m, BatchRenorm1d)]
    assert len(layers) == 2 and layers[0].warmup_steps == 100 and layers[0].momentum == 0.05
    assert NETS.get("MLPNet")({**spec, "batch_renorm": True}, 4, 1)(torch.randn(5, 4)).shape == (5, 1)
    with pytest.raises(SpecError, match=r"agent\.net\.batch_renorm: unknown key"):
        NETS.get("MLPNet")({**spec, "batch_renorm": {"warmup": 5}}, 4, 1)
