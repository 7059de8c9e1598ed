"""ConvNet and DuelingConvNet: Nature CNN shapes on uint8 frames, normalize, batch_norm defaults, spec errors."""

from collections.abc import Iterator

import pytest
import torch
from loguru import logger
from torch import nn

from slm_lab.agent.net import NETS, ConvNet, DuelingConvNet
from slm_lab.errors import SpecError
from slm_lab.spec.schema import ConvNetSpec, DuelingConvNetSpec

NATURE = {
    "type": "ConvNet",
    "conv_hid_layers": [[32, 8, 4, 0, 1], [64, 4, 2, 0, 1], [32, 3, 1, 0, 1]],
    "fc_hid_layers": [512],
    "hid_layers_activation": "relu",
    "init_fn": "orthogonal_",
}
SHAPE = (4, 84, 84)


@pytest.fixture
def caplog_loguru() -> Iterator[list[str]]:
    messages: list[str] = []
    handler = logger.add(lambda m: messages.append(str(m)), level="INFO")
    yield messages
    logger.remove(handler)


def _frames(batch: int = 2) -> torch.Tensor:
    return torch.randint(0, 256, (batch, *SHAPE), dtype=torch.uint8)


def test_nature_cnn_shapes_on_uint8() -> None:
    assert NETS.get("ConvNet") is ConvNet and not ConvNet.flat_input
    net = ConvNet({**NATURE, "normalize": True}, SHAPE, 6)
    assert net.body.conv(torch.zeros(1, *SHAPE)).shape == (1, 32 * 7 * 7)  # 84 -> 20 -> 9 -> 7
    assert net(_frames(3)).shape == (3, 6)
    outs = net.__class__({**NATURE, "batch_norm": False}, SHAPE, [6, 1])(_frames())
    assert [o.shape for o in outs] == [(2, 6), (2, 1)]


def test_log_std_init_gives_a_parameter_output() -> None:
    net = ConvNet({**NATURE, "log_std_init": -0.5, "batch_norm": False}, SHAPE, [3, 3])
    loc, log_std = net(_frames())
    assert loc.shape == log_std.shape == (2, 3)
    assert torch.allclose(log_std, torch.full((2, 3), -0.5))


def test_normalize_divides_by_255_on_the_net() -> None:
    spec = {**NATURE, "batch_norm": False}
    raw, scaled = ConvNet(spec, SHAPE, 2), ConvNet({**spec, "normalize": True}, SHAPE, 2)
    scaled.load_state_dict(raw.state_dict())
    x = _frames()
    assert torch.allclose(scaled(x), raw(x.float() / 255.0), atol=1e-6)
    assert not torch.allclose(scaled(x), raw(x), atol=1e-3)
    assert torch.allclose(raw(x), raw(x.float()))  # uint8 and float inputs give the same result


def test_batch_norm_default_true_after_every_conv_but_the_first(caplog_loguru: list[str]) -> None:
    spec = dict(NATURE)
    net = ConvNet(spec, SHAPE, 2)
    layers = list(net.body.conv)
    bns = [i for i, m in enumerate(layers) if isinstance(m, nn.BatchNorm2d)]
    convs = [i for i, m in enumerate(layers) if isinstance(m, nn.Conv2d)]
    assert len(bns) == 2 and bns[0] > convs[1] and bns[1] > convs[2] and bns[0] < convs[2]
    assert any("batch_norm" in m and "true" in m for m in caplog_loguru)
    assert not any(
        isinstance(m, nn.BatchNorm2d) for m in ConvNet({**spec, "batch_norm": False}, SHAPE, 2).modules()
    )
    assert not any(isinstance(m, nn.BatchNorm2d) for m in DuelingConvNet(spec, SHAPE, 2).modules())
    assert ConvNetSpec.model_fields["batch_norm"].default is True
    assert DuelingConvNetSpec.model_fields["batch_norm"].default is False


def test_dueling_conv_shapes_and_structure() -> None:
    net = DuelingConvNet({**NATURE, "type": "DuelingConvNet", "normalize": True}, SHAPE, 5)
    assert not net.flat_input
    x = _frames(3)
    q = net(x)
    assert q.shape == (3, 5)
    v = net.head.v(net.body(x))
    assert torch.allclose(q.mean(-1, keepdim=True), v, atol=1e-5)
    with pytest.raises(SpecError, match=r"agent.net.type"):
        DuelingConvNet(NATURE, SHAPE, [2, 2])


def test_tuple_kernel_and_layer_norm() -> None:
    spec = {
        **NATURE,
        "conv_hid_layers": [[8, [8, 4], [4, 2]], [16, 3]],
        "layer_norm": True,
        "batch_norm": False,
    }
    net = ConvNet(spec, (1, 20, 20), 2)
    conv = net.body.conv[0]
    assert conv.kernel_size == (8, 4) and conv.stride == (4, 2)
    assert any(isinstance(m, nn.LayerNorm) for m in net.body.fc)
    assert net(torch.rand(2, 1, 20, 20)).shape == (2, 2)


def test_conv_spec_errors() -> None:
    with pytest.raises(SpecError, match=r"agent.net.conv_hid_layers\[1\]"):
        ConvNet({**NATURE, "conv_hid_layers": [[32, 8, 4], [64]]}, SHAPE, 2)
    with pytest.raises(SpecError, match="shape"):
        ConvNet(NATURE, 4 * 84 * 84, 2)  # a flat size cannot be unflattened
    with pytest.raises(Exception, match="conv_hid_layers"):
        ConvNetSpec.model_validate({k: v for k, v in NATURE.items() if k != "conv_hid_layers"})
