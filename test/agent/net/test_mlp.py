import pytest
import torch

from slm_lab.agent.net import MLPNet, OptimPair, TrainingChecker, train_step
from slm_lab.agent.net.builder import build_loss, build_optimizer, get_activation
from slm_lab.errors import SpecError

NET_SPEC = {
    "type": "MLPNet",
    "hid_layers": [16, 8],
    "hid_layers_activation": "tanh",
    "init_fn": "orthogonal_",
}


def test_output_shapes_single_and_multi_tail() -> None:
    x = torch.randn(5, 4)
    assert MLPNet(NET_SPEC, 4, 3)(x).shape == (5, 3)
    outs = MLPNet(NET_SPEC, 4, [2, 2, 1])(x)
    assert [o.shape for o in outs] == [(5, 2), (5, 2), (5, 1)]


def test_log_std_init_is_a_state_independent_parameter() -> None:
    net = MLPNet({**NET_SPEC, "log_std_init": -0.5}, 4, [2, 2])
    mean, log_std = net(torch.randn(3, 4))
    assert mean.shape == log_std.shape == (3, 2)
    assert torch.allclose(log_std, torch.full((3, 2), -0.5))


def test_orthogonal_init_zero_bias() -> None:
    net = MLPNet(NET_SPEC, 4, 3)
    first = net.body[0]
    assert torch.count_nonzero(first.bias) == 0
    w = first.weight  # (16, 4): orthogonal columns scaled by the tanh gain 5/3
    assert torch.allclose(w.T @ w, (5 / 3) ** 2 * torch.eye(4), atol=1e-4)


def test_layer_norm_and_batch_norm_options() -> None:
    ln = MLPNet({**NET_SPEC, "layer_norm": True}, 4, 2)
    bn = MLPNet({**NET_SPEC, "batch_norm": True}, 4, 2)
    assert any(isinstance(m, torch.nn.LayerNorm) for m in ln.modules())
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in bn.modules())


@pytest.mark.parametrize(
    "name",
    ["ReLU6", "hardswish", "Hardsigmoid", "RReLU", "LogSigmoid", "Tanhshrink", "Softmin", "Softshrink"],
)
def test_any_torch_nn_activation_builds_by_name(name: str) -> None:
    net = MLPNet({**NET_SPEC, "hid_layers_activation": name}, 4, 2)
    assert any(type(m).__name__.lower() == name.lower() for m in net.modules())
    assert net(torch.randn(3, 4)).shape == (3, 2)


def test_an_activation_that_changes_the_width_is_refused() -> None:
    with pytest.raises(SpecError, match=r"unknown activation 'GLU'"):
        get_activation("GLU")


def test_unknown_names_raise_spec_errors_listing_valid_names() -> None:
    with pytest.raises(SpecError, match=r"unknown activation 'tanhh'.*tanh"):
        get_activation("tanhh")
    with pytest.raises(SpecError, match=r"loss_spec.name: unknown loss 'MSE'.*mseloss"):
        build_loss({"name": "MSE"})
    with pytest.raises(SpecError, match=r"optim_spec.name: unknown optimizer 'Adamm'.*Adam"):
        build_optimizer({"name": "Adamm"}, MLPNet(NET_SPEC, 4, 2).parameters())
    assert isinstance(build_loss({"name": "smoothl1loss"}), torch.nn.SmoothL1Loss)


def test_train_step_clips_and_steps_each_net_with_one_backward() -> None:
    torch.manual_seed(0)
    actor, critic = MLPNet(NET_SPEC, 4, 2), MLPNet(NET_SPEC, 4, 1)
    pairs = [
        OptimPair(actor, torch.optim.SGD(actor.parameters(), lr=0.1), clip_grad_val=1e-3),
        OptimPair(critic, torch.optim.SGD(critic.parameters(), lr=0.1), clip_grad_val=None),
    ]
    x = torch.randn(8, 4)
    before = [p.detach().clone() for p in actor.parameters()]
    checker = TrainingChecker(strict=True)
    loss = actor(x).pow(2).sum() * 100 + critic(x).pow(2).sum()
    assert train_step(loss, pairs, checker, strict=True)
    step_norm = torch.sqrt(sum(((p - b) ** 2).sum() for p, b in zip(actor.parameters(), before, strict=True)))
    assert step_norm <= 0.1 * 1e-3 + 1e-7  # lr × clipped gradient norm
    assert checker.grad_norm > 0


def test_non_finite_loss_is_skipped_or_raises_under_test() -> None:
    net = MLPNet(NET_SPEC, 4, 1)
    pair = OptimPair(net, torch.optim.SGD(net.parameters(), lr=0.1))
    loss = net(torch.randn(2, 4)).sum() * float("nan")
    assert not train_step(loss, [pair])
    with pytest.raises(FloatingPointError):
        train_step(loss, [pair], strict=True)


def test_checker_raises_when_nothing_changes_under_test() -> None:
    net = MLPNet(NET_SPEC, 4, 1)
    pair = OptimPair(net, torch.optim.SGD(net.parameters(), lr=0.0))
    with pytest.raises(AssertionError, match="no parameter changed"):
        train_step(net(torch.randn(2, 4)).sum(), [pair], TrainingChecker(strict=True), strict=True)


def test_clip_grad_norm_matches_torch() -> None:
    from slm_lab.agent.net.base import clip_grad_norm

    torch.manual_seed(0)
    a, b = MLPNet(NET_SPEC, 4, 2), MLPNet(NET_SPEC, 4, 2)
    b.load_state_dict(a.state_dict())
    x = torch.randn(5, 4)
    for net in (a, b):
        (net(x) ** 2).sum().backward()
    expected = torch.nn.utils.clip_grad_norm_(a.parameters(), 0.1)
    norm = clip_grad_norm(list(b.parameters()), 0.1)
    assert torch.equal(norm, expected)  # bit for bit: switching to it changed no result
    assert all(torch.equal(p.grad, q.grad) for p, q in zip(a.parameters(), b.parameters(), strict=True))
