"""TensorBoard event files of a session.

Written in dev mode, and in train mode when the spec asks for it with ``meta.tensorboard: true``
(``meta.tensorboard: false`` turns it off in dev mode too). Dev mode writes session 0 only, as in the reference; a
train run that asks for it writes every session, each to its own event file, since the tags already name the
session.

The writer goes in the run's ``log/`` folder, with the session prename as the event file's suffix, so that
``tensorboard --logdir data/{name}_{ts}/log`` shows every session of the run. At each checkpoint it writes:

- every dataframe column of the checkpoint row as the scalar ``{col}/trial{t}_session{s}``;
- a histogram of every parameter of every net except ``target_*``/``global_*`` copies,
  ``{net}.{param}/trial{t}_session{s}``;
- a histogram of the actions taken since the previous checkpoint, ``action/…`` (``action.{d}/…`` per dimension
  when an action has several, as the reference names them);

and the model graph of the main net once, at frame 0. Failing to write any of it only warns.
"""

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from loguru import logger
from torch import nn

__all__ = ["TensorBoardLog", "tensorboard_enabled"]


def tensorboard_enabled(spec: Mapping[str, Any], mode: str) -> bool:
    """Dev mode: session 0, unless ``meta.tensorboard`` is false. Train mode: every session when
    ``meta.tensorboard`` is true. Never in other modes (test, enjoy)."""
    meta = spec["meta"]
    wanted = meta.get("tensorboard")
    if mode == "dev":
        return wanted is not False and meta.get("session", 0) <= 0
    return mode == "train" and wanted is True


class TensorBoardLog:
    """A ``SummaryWriter`` for one session plus the actions collected between checkpoints."""

    def __init__(
        self, log_dir: str, prename: str, trial: int, session: int, nets: Mapping[str, nn.Module]
    ) -> None:
        from torch.utils.tensorboard import (
            SummaryWriter,
        )  # needs the tensorboard package; imported only when used

        self.writer = SummaryWriter(log_dir=log_dir, filename_suffix=f"_{prename}")
        self.suffix = f"trial{trial}_session{session}"
        self.nets = {name: net for name, net in nets.items() if not name.startswith(("target_", "global_"))}
        self.actions: list[np.ndarray] = []

    @classmethod
    def for_session(
        cls, spec: Mapping[str, Any], mode: str, nets: Mapping[str, nn.Module]
    ) -> "TensorBoardLog | None":
        """The session's log when ``tensorboard_enabled``; None otherwise, or (with a warning) when TensorBoard
        cannot be set up."""
        if not tensorboard_enabled(spec, mode):
            return None
        meta = spec["meta"]
        prename = f"{spec['name']}_t{meta['trial']}_s{meta['session']}"
        try:
            return cls(f"{meta['predir']}/log", prename, meta["trial"], meta["session"], nets)
        except Exception as e:  # e.g. the tensorboard package is missing
            logger.warning(f"TensorBoard disabled: {type(e).__name__}: {e}")
            return None

    def add_actions(self, action: np.ndarray) -> None:
        """Keep one vector step's actions, ``(num_envs,)`` or ``(num_envs, A)``, for the next histogram."""
        self.actions.append(np.asarray(action))

    def add_graph(self, state: np.ndarray) -> None:
        """The model graph of the first net, traced on one batch of states."""
        if not self.nets:
            return
        name, net = next(iter(self.nets.items()))
        try:
            device = next(net.parameters()).device
            inputs = torch.as_tensor(np.asarray(state), dtype=torch.float32, device=device)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.jit.trace deprecation notices
                self.writer.add_graph(net, inputs)
        except Exception as e:
            logger.warning(f"TensorBoard model graph of {name} not written: {type(e).__name__}: {e}")

    def write_checkpoint(self, row: Mapping[str, float], frame: int) -> None:
        """Scalars of the checkpoint row, parameter histograms and the action histogram since the last checkpoint."""
        try:
            for col, value in row.items():
                if value is not None and np.isfinite(value):
                    self.writer.add_scalar(f"{col}/{self.suffix}", float(value), frame)
            for net_name, net in self.nets.items():
                for param_name, param in net.named_parameters():
                    self.writer.add_histogram(
                        f"{net_name}.{param_name}/{self.suffix}", param.detach().cpu(), frame
                    )
            self._write_actions(frame)
            self.writer.flush()
        except Exception as e:
            logger.warning(f"TensorBoard checkpoint not written: {type(e).__name__}: {e}")

    def _write_actions(self, frame: int) -> None:
        if not self.actions:
            return
        actions = np.concatenate(
            [a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(-1, 1) for a in self.actions]
        )
        self.actions.clear()
        actions = actions.astype(np.float64)
        if actions.shape[1] == 1:
            self.writer.add_histogram(f"action/{self.suffix}", actions[:, 0], frame)
        else:
            for d in range(actions.shape[1]):
                self.writer.add_histogram(f"action.{d}/{self.suffix}", actions[:, d], frame)

    def close(self) -> None:
        self.writer.close()
