"""Recurrent nets over a short observation history (D16)."""

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from slm_lab.agent.net.base import net_config
from slm_lab.agent.net.builder import build_mlp, init_layers
from slm_lab.agent.net.mlp import NETS
from slm_lab.agent.net.tails import TailsMixin
from slm_lab.errors import SpecError
from slm_lab.spec.schema import RecurrentNetSpec

__all__ = ["RecurrentNet"]

_CELLS: dict[str, type[nn.RNNBase]] = {"RNN": nn.RNN, "GRU": nn.GRU, "LSTM": nn.LSTM}


@NETS.register("RecurrentNet")
class RecurrentNet(TailsMixin):
    """Optional per-step ``fc_hid_layers`` -> RNN/GRU/LSTM (batch-first) -> the last layer's final hidden state ->
    one Linear tail per output.

    Input (B, seq_len, D): each observation is the stack of the env's last ``seq_len`` observations, zero-padded at
    reset, so the net sees a real history (D16; the reference repeated one observation ``seq_len`` times). A
    bidirectional net concatenates the last layer's final forward and backward states (2 · ``rnn_hidden_size``).
    The hidden state is not carried between calls: the history lives in the observation, which keeps replay and
    minibatching exactly as for feed-forward nets. Spec example::

        {"type": "RecurrentNet", "cell_type": "GRU", "fc_hid_layers": [64], "hid_layers_activation": "relu",
         "rnn_hidden_size": 64, "rnn_num_layers": 1, "bidirectional": false, "seq_len": 4,
         "optim_spec": {"name": "Adam", "lr": 1e-3}}
    """

    flat_input = False  # takes (B, seq_len, D); a flattened (B, seq_len * D) input is unflattened in forward
    takes_obs_shape = True  # the algorithm passes the observation shape as in_dim, not its flattened size

    def __init__(
        self,
        net_spec: Mapping[str, Any] | RecurrentNetSpec,
        in_dim: int | Sequence[int],
        out_dim: int | list[int],
    ) -> None:
        super().__init__()
        cfg = net_config(net_spec, "RecurrentNet")
        self.seq_len = int(cfg.seq_len)
        if self.seq_len < 1:
            raise SpecError(f"agent.net.seq_len: must be at least 1, got {self.seq_len}")
        self.step_dim = self._step_dim(in_dim)
        self.in_dim, self.out_dim = in_dim, out_dim
        cell_type = str(cfg.cell_type)
        cell_cls = _CELLS.get(cell_type.upper())
        if cell_cls is None:
            raise SpecError(
                f"agent.net.cell_type: unknown cell {cell_type!r}; valid names: {', '.join(_CELLS)}"
            )
        activation = cfg.hid_layers_activation
        fc_hid_layers = list(cfg.fc_hid_layers)
        # Linear layers act on the last dim, so the fc stack runs on every time step of (B, T, D) at once
        self.fc = build_mlp(self.step_dim, fc_hid_layers, activation, layer_norm=cfg.layer_norm)
        self.hidden_size = int(cfg.rnn_hidden_size)
        self.num_layers = int(cfg.rnn_num_layers)
        self.bidirectional = cfg.bidirectional
        self.rnn = cell_cls(
            input_size=fc_hid_layers[-1] if fc_hid_layers else self.step_dim,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            batch_first=True,
            bidirectional=self.bidirectional,
        )
        self.num_directions = 2 if self.bidirectional else 1
        self._init_tails(self.hidden_size * self.num_directions, out_dim, cfg)
        init_layers(self, cfg.init_fn, activation)

    def _step_dim(self, in_dim: int | Sequence[int]) -> int:
        """The per-step feature width D from the observation shape (seq_len, D), or from its flattened size
        seq_len * D, which is what the algorithms pass as an int ``in_dim`` for every net class."""
        if isinstance(in_dim, int):
            if in_dim % self.seq_len == 0:
                return in_dim // self.seq_len
            shape: tuple[int, ...] = (in_dim,)
        else:
            shape = tuple(int(d) for d in in_dim)
        if len(shape) == 2 and shape[0] == self.seq_len:
            return shape[1]
        raise SpecError(
            f"agent.net.seq_len: RecurrentNet expects observations of shape (seq_len, D) = ({self.seq_len}, D), "
            f"got {shape}; the env stacks the last seq_len observations of a flat observation space"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if x.dim() == 2:  # (B, seq_len * D) from an algorithm that flattened the stacked history
            x = x.view(x.shape[0], -1, self.step_dim)
        if x.dim() != 3 or x.shape[-1] != self.step_dim:
            raise ValueError(
                f"RecurrentNet expects (B, seq_len, {self.step_dim}) input, got {tuple(x.shape)}"
            )
        _, h_n = self.rnn(self.fc(x))
        if isinstance(h_n, tuple):  # LSTM returns (h_n, c_n); the hidden state h_n is the output
            h_n = h_n[0]
        # h_n: (num_layers * num_directions, B, H) -> the last layer's states, directions side by side: (B, dirs * H)
        last = h_n.view(self.num_layers, self.num_directions, x.shape[0], self.hidden_size)[-1]
        return self._tails_forward(last.transpose(0, 1).reshape(x.shape[0], -1))
