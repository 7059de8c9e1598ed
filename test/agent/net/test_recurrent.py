"""RecurrentNet: shapes per cell type, bidirectional, and that the output depends on a real, ordered history."""

import pytest
import torch
from torch import nn

from slm_lab.agent.net import NETS, RecurrentNet
from slm_lab.errors import SpecError
from slm_lab.spec.schema import RecurrentNetSpec

SPEC = {
    "type": "RecurrentNet",
    "cell_type": "GRU",
    "fc_hid_layers": [16],
    "hid_layers_activation": "relu",
    "rnn_hidden_size": 12,
    "seq_len": 4,
    "init_fn": "orthogonal_",
}


@pytest.mark.parametrize("cell_type, cls", [("RNN", nn.RNN), ("GRU", nn.GRU), ("LSTM", nn.LSTM)])
def test_output_shapes_per_cell(cell_type: str, cls: type[nn.Module]) -> None:
    net = RecurrentNet({**SPEC, "cell_type": cell_type, "rnn_num_layers": 2}, (4, 3), [2, 1])
    assert type(net.rnn) is cls and not net.flat_input
    loc, value = net(torch.randn(5, 4, 3))
    assert loc.shape == (5, 2) and value.shape == (5, 1)


def test_bidirectional_concatenates_both_directions() -> None:
    net = RecurrentNet({**SPEC, "bidirectional": True, "fc_hid_layers": []}, (4, 3), 2)
    assert net.tails[0].in_features == 24
    assert net(torch.randn(5, 4, 3)).shape == (5, 2)


def test_int_in_dim_is_the_flattened_history_and_flat_input_is_unflattened() -> None:
    assert NETS.get("RecurrentNet") is RecurrentNet
    net = RecurrentNet(SPEC, 12, 2)  # what the algorithms pass: prod((seq_len, D)) = 4 * 3
    assert net.step_dim == 3
    x = torch.randn(5, 4, 3)
    assert torch.allclose(net(x), net(x.flatten(1)))


def test_output_depends_on_earlier_steps_and_their_order() -> None:
    torch.manual_seed(0)
    net = RecurrentNet(SPEC, (4, 3), 2)
    x = torch.randn(1, 4, 3)
    changed_first = x.clone()
    changed_first[:, 0] += 1.0  # only the oldest observation differs
    reordered = x[:, [1, 0, 2, 3]]  # same observations, the two oldest swapped
    out = net(x)
    assert not torch.allclose(out, net(changed_first), atol=1e-5)
    assert not torch.allclose(out, net(reordered), atol=1e-5)
    # the zero padding at reset counts as history too: a padded sequence differs from a full one
    padded = torch.cat([torch.zeros(1, 3, 3), x[:, -1:]], dim=1)
    assert not torch.allclose(out, net(padded), atol=1e-5)


def test_recurrent_spec_errors() -> None:
    with pytest.raises(SpecError, match=r"agent.net.cell_type"):
        RecurrentNet({**SPEC, "cell_type": "Transformer"}, (4, 3), 2)
    with pytest.raises(SpecError, match=r"agent.net.seq_len"):
        RecurrentNet(SPEC, (5, 3), 2)
    for key in ("rnn_hidden_size", "seq_len"):
        with pytest.raises(Exception, match=key):
            RecurrentNetSpec.model_validate({k: v for k, v in SPEC.items() if k != key})
