"""DuelingMLPNet and DuelingHead: shapes, the Q = V + A − mean(A) structure, gradients, init and spec errors."""

import re

import pytest
import torch

from slm_lab.agent.net import NETS, DuelingHead, DuelingMLPNet
from slm_lab.errors import SpecError
from slm_lab.spec.schema import DuelingMLPNetSpec

NET_SPEC = {
    "type": "DuelingMLPNet",
    "hid_layers": [16, 8],
    "hid_layers_activation": "relu",
    "init_fn": "orthogonal_",
}


def test_output_shape_and_registered() -> None:
    assert NETS.get("DuelingMLPNet") is DuelingMLPNet
    net = DuelingMLPNet(NET_SPEC, 4, 3)
    assert net.flat_input
    assert net(torch.randn(5, 4)).shape == (5, 3)
    assert DuelingMLPNet({**NET_SPEC, "hid_layers": []}, 4, 2)(torch.randn(7, 4)).shape == (7, 2)


def test_mean_over_actions_of_q_is_v() -> None:
    torch.manual_seed(0)
    net = DuelingMLPNet(NET_SPEC, 4, 5)
    x = torch.randn(6, 4)
    h = net.body(x)
    q, v, adv = net(x), net.head.v(h), net.head.adv(h)
    assert torch.allclose(q.mean(-1, keepdim=True), v, atol=1e-6)
    assert torch.allclose(q - q.mean(-1, keepdim=True), adv - adv.mean(-1, keepdim=True), atol=1e-6)


def test_zeroed_advantage_stream_gives_v_for_every_action() -> None:
    torch.manual_seed(0)
    head = DuelingHead(8, 3)
    with torch.no_grad():
        head.adv.weight.zero_()
        head.adv.bias.fill_(2.5)  # a constant advantage is removed by the mean subtraction
    h = torch.randn(4, 8)
    assert torch.allclose(head(h), head.v(h).expand(4, 3), atol=1e-6)


def test_gradient_reaches_both_streams_and_the_body() -> None:
    torch.manual_seed(0)
    net = DuelingMLPNet(NET_SPEC, 4, 3)
    q = net(torch.randn(8, 4))
    q.gather(1, torch.tensor([[0], [1], [2], [0], [1], [2], [0], [1]])).sum().backward()
    for name in ("head.v.weight", "head.adv.weight", "body.0.weight"):
        grad = dict(net.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_init_like_mlpnet_on_body_and_heads() -> None:
    net = DuelingMLPNet(NET_SPEC, 4, 3)
    for layer in (net.body[0], net.head.v, net.head.adv):
        assert torch.count_nonzero(layer.bias) == 0
    w = net.body[0].weight  # (16, 4): orthogonal columns scaled by the relu gain √2
    assert torch.allclose(w.T @ w, 2.0 * torch.eye(4), atol=1e-4)


def test_layer_norm_option_is_in_the_body() -> None:
    net = DuelingMLPNet({**NET_SPEC, "layer_norm": True}, 4, 2)
    assert any(isinstance(m, torch.nn.LayerNorm) for m in net.body)


@pytest.mark.parametrize("out_dim", [[2, 2], [3, 1], 0])
def test_non_int_out_dim_is_a_spec_error_naming_net_type(out_dim: object) -> None:
    with pytest.raises(SpecError, match=r"agent\.net\.type: DuelingMLPNet .*discrete action"):
        DuelingMLPNet(NET_SPEC, 4, out_dim)  # type: ignore[arg-type]


def test_docstring_spec_example_validates() -> None:
    doc = DuelingMLPNet.__doc__ or ""
    example = re.search(r"Spec example::\s*\n\s*(\{.*?\})\n", doc, re.S)
    assert example is not None
    spec = DuelingMLPNetSpec.model_validate_json(example.group(1))
    net = DuelingMLPNet(spec.model_dump(), 4, 2)
    assert net(torch.randn(3, 4)).shape == (3, 2)
